from setuptools import find_packages, setup

requires = [
    "alembic",
    "bcrypt",
    "boto3",
    "plaster_pastedeploy",
    "psycopg[binary]",
    "pyramid",
    "pyramid_jinja2",
    "pyramid_tm",
    "SQLAlchemy>=2.0",
    "transaction",
    "waitress",
    "zope.sqlalchemy",
]

tests_require = [
    "mypy",
    "pytest",
    "pytest-timeout",
    "ruff",
    "WebTest",
]

setup(
    name="stevedore-registry",
    version="0.1.0",
    description="A private container registry and index that an organization runs for itself",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"stevedore.web": ["templates/*.jinja2", "templates/**/*.jinja2", "static/*"]},
    zip_safe=False,
    python_requires=">=3.11",
    install_requires=requires,
    extras_require={"testing": tests_require},
    entry_points={
        "paste.app_factory": ["main = stevedore.web.app:main"],
        "paste.server_runner": ["waitress = stevedore.web.server:serve_paste"],
        "console_scripts": ["stevedore = stevedore.cli:main"],
    },
)
