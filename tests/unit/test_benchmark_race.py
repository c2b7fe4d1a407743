"""The pure parts of benchmarks.race: medians of per-round ratios, the targets' verdicts, the options."""

from __future__ import annotations

import pytest
from benchmarks.race.cli import FULL, QUICK, parse_args, resolve_variants
from benchmarks.race.stats import median_ratio, rotated, round_ratios
from benchmarks.race.targets import evaluate


def test_the_median_is_taken_of_the_per_round_ratios_not_of_the_medians():
    ours, theirs = [100.0, 300.0, 90.0], [50.0, 600.0, 100.0]  # ratios 2.0, 0.5, 0.9
    assert round_ratios(ours, theirs) == [2.0, 0.5, 0.9]
    assert median_ratio(ours, theirs) == 0.9  # the ratio of the medians would be 100 / 100 = 1.0


def test_a_round_missing_or_zero_on_one_side_is_left_out():
    assert median_ratio([10.0, 20.0, 30.0], [5.0, 0.0]) == 2.0
    assert median_ratio([10.0], []) is None


def test_every_contestant_goes_first_in_turn():
    assert rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert rotated(["a", "b"], 1) == ["b", "a"]
    assert rotated(["a", "b"], 2) == ["a", "b"]


def _one(samples, prefix, variant="sqlite"):
    found = [v for v in evaluate(samples, [variant]) if v.target.startswith(prefix) and v.variant == variant]
    assert len(found) == 1, found
    return found[0]


def test_a_push_must_beat_distribution_by_a_fifth_and_reach_nine_tenths_of_the_bare_app():
    samples = {"push_monolithic": {"sqlite": [120.0, 130.0], "distribution": [100.0, 100.0], "bare": [130.0, 140.0]}}
    met = _one(samples, "monolithic push")
    assert met.met is True and met.word == "met"
    assert met.measured == "1.25x Distribution, 0.93x bare"
    samples["push_monolithic"]["bare"] = [200.0, 200.0]  # only 0.62x the ceiling
    assert _one(samples, "monolithic push").word == "NOT met"
    samples["push_monolithic"]["bare"] = [130.0, 140.0]
    samples["push_monolithic"]["distribution"] = [110.0, 110.0]  # 1.14x: not enough
    assert _one(samples, "monolithic push").met is False


def test_a_push_without_its_bare_app_figure_is_not_judged():
    samples = {"push_docker": {"sqlite": [300.0], "distribution": [100.0]}}
    verdict = _one(samples, "docker push")
    assert verdict.met is None and verdict.word == "not measured"


def test_concurrent_pulls_must_keep_the_rate_and_the_cpu_per_gb():
    samples = {"pull8": {"sqlite": [950.0], "distribution": [1000.0]},
               "pull8_cpu": {"sqlite": [1.9], "distribution": [1.0]}}  # fmt: skip
    assert _one(samples, "8 concurrent pulls").met is True
    samples["pull8_cpu"]["sqlite"] = [2.1]
    assert _one(samples, "8 concurrent pulls").met is False
    samples["pull8_cpu"]["sqlite"] = [1.0]
    samples["pull8"]["sqlite"] = [850.0]
    assert _one(samples, "8 concurrent pulls").met is False


def test_small_pushes_need_the_rate_and_no_error():
    samples = {"small_one": {"postgres": [70.0], "distribution": [64.0]}, "small_one_errors": {"postgres": [0.0]}}
    assert _one(samples, "small pushes", "postgres").met is True
    samples["small_one_errors"]["postgres"] = [1.0]
    verdict = _one(samples, "small pushes", "postgres")
    assert verdict.met is False and verdict.measured == "1.09x, 1 errors"


def test_request_rate_and_small_pushes_are_judged_on_the_databases_only():
    samples = {"rate_bearer": {"s3": [900.0], "sqlite": [500.0], "distribution": [580.0]}}
    verdicts = evaluate(samples, ["sqlite", "s3"])
    assert [(v.variant, v.met) for v in verdicts] == [("sqlite", False)]


def test_rss_growth_must_stay_under_100_mib():
    assert _one({"rss_growth": {"sqlite": [99.0]}}, "RSS").met is True
    assert _one({"rss_growth": {"sqlite": [100.0]}}, "RSS").word == "NOT met"


def test_the_defaults_are_three_full_rounds_of_every_section():
    args = parse_args([])
    assert args.rounds == 3 and args.sizes == FULL and args.variants is None
    assert args.only == ["push", "pull", "rate", "small", "rss"]
    assert args.json is None and args.timeout > 0


def test_quick_means_small_sizes_and_one_round_unless_told_otherwise():
    args = parse_args(["--quick"])
    assert args.rounds == 1 and args.sizes == QUICK
    assert parse_args(["--quick", "--rounds", "2"]).rounds == 2


def test_variants_and_sections_are_comma_lists_in_a_fixed_order():
    args = parse_args(["--variants", "s3-redirect,sqlite,sqlite", "--only", "rss,push", "--json", "out.json"])
    assert args.variants == ["sqlite", "s3-redirect"]
    assert args.only == ["push", "rss"]
    assert args.json == "out.json"


@pytest.mark.parametrize("argv", [["--variants", "mysql"], ["--only", "push,speed"], ["--rounds", "0"],
                                  ["--variants", ""]])  # fmt: skip
def test_unknown_or_senseless_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_default_variants_are_those_this_machine_can_run():
    assert resolve_variants(None, {"sqlite", "postgres"}) == (["sqlite", "postgres"], ["s3", "s3-redirect"])
    assert resolve_variants(["s3", "sqlite"], {"sqlite"}) == (["sqlite"], ["s3"])
