"""`python -m benchmarks.race`: Stevedore against CNCF Distribution 2.8 (htpasswd) and a bare WSGI app on the same
waitress, side by side, alternating, several rounds, medians of per-round ratios, and the speed issue's TARGETS.

Modules, by role: cli (options), stats (medians of ratios), targets (verdicts), servers (starting everything),
auth (docker's token flow), load (many clients in several processes), image (a small image as docker pushes it),
push / pull / rate / small / rss (the sections), report (tables), main (the run and its clean-up).
See benchmarks/README.md.
"""
