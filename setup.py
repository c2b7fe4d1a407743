from setuptools import find_namespace_packages, setup

requires = [
    "alembic",
    "bcrypt",
    "boto3",
    "plaster_pastedeploy",
    # Prometheus's standard text exposition format, and its multiprocess mode: with `workers = N` the counters of
    # every worker process are summed from files in PROMETHEUS_MULTIPROC_DIR (web/metrics.py).
    "prometheus_client",
    "psycopg[binary]",
    # Registry tokens as standard JWTs (ES256/RS256) that other registries verify: PyJWT is the well-kept
    # implementation, with `cryptography` for the keys and the certificates we publish.
    "PyJWT[crypto]",
    "pyramid",
    "pyramid_jinja2",
    "pyramid_tm",
    "SQLAlchemy>=2.0",
    "transaction",
    "waitress",
    "zope.sqlalchemy",
]

tests_require = [
    # An SMTP sink for the mail tests (the standard library's smtpd is gone).
    "aiosmtpd",
    # moto's S3 server (moto_server, a real HTTP endpoint) for the S3 blob store's tests.
    "moto[server]",
    "mypy",
    "oras",
    # Drives Debian's chromium (executable_path) in tests/integration/browser; it never downloads a browser.
    "playwright",
    "pytest",
    "pytest-timeout",
    # A registry client that refuses to send credentials over plain HTTP: the TLS tests show it works behind nginx.
    "python-dxf",
    "ruff",
    "WebTest",
]

setup(
    name="stevedore-registry",
    version="0.1.0",
    description="A private container registry and index that an organization runs for itself",
    package_dir={"": "src"},
    # Namespace packages too, so templates/ and static/ ship as the data packages they are.
    packages=find_namespace_packages(where="src", include=["stevedore", "stevedore.*"]),
    include_package_data=True,
    package_data={"stevedore.web.templates": ["*.jinja2"], "stevedore.web.static": ["*"]},
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
