"""Command lines: options anywhere among KEY VALUE overrides (one parser for every tool), an int for
a float key, rank_corr.py's help, analyses of the final metric beside the best, refusals naming keys."""
import argparse
import json

import pytest

import unnas.commands.rank_corr as rank_corr_cmd
import unnas.commands.search as search_cmd
import unnas.commands.train as train_cmd
from unnas import cli
from unnas.config import ConfigError, load_cfg
from unnas.study.config import study_defaults, validate_study_cfg
from unnas.train.config import train_defaults


SEARCH, TRAIN, RANK_CORR = search_cmd, train_cmd, rank_corr_cmd   # what tools/*.py run
PARSERS = {"search": SEARCH.parse_args, "train": TRAIN.parse_args, "rank_corr": RANK_CORR._parse_run_args}


# ---- (a) options before, between and after KEY VALUE overrides ------------------------------------
@pytest.mark.parametrize("tool", list(PARSERS))
@pytest.mark.parametrize("argv", [
    ["--epochs", "2", "--out", "o", "MODEL.WIDTH", "16", "SEED", "3"],          # options first
    ["MODEL.WIDTH", "16", "SEED", "3", "--epochs", "2", "--out", "o"],          # options after
    ["MODEL.WIDTH", "16", "--epochs", "2", "SEED", "3", "--out", "o"],          # between
    ["--epochs", "2", "MODEL.WIDTH", "16", "--out", "o", "SEED", "3"],          # interleaved
], ids=["before", "after", "between", "interleaved"])
def test_options_anywhere_among_overrides(tool, argv):
    args = PARSERS[tool](argv)
    assert args.opts == ["MODEL.WIDTH", "16", "SEED", "3"] and args.epochs == 2 and args.out == "o"


@pytest.mark.parametrize("tool", ["search", "train"])
def test_store_true_flag_after_an_override(tool):
    args = PARSERS[tool](["MODEL.WIDTH", "16", "--no-progress"])   # was "odd number of overrides"
    assert args.opts == ["MODEL.WIDTH", "16"] and args.no_progress


@pytest.mark.parametrize("tool", list(PARSERS))
def test_unknown_option_is_still_an_error_and_negative_values_are_values(tool, capsys):
    with pytest.raises(SystemExit) as exc:
        PARSERS[tool](["MODEL.WIDTH", "16", "--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert PARSERS[tool](["--out", "o", "OPTIM.LR", "-0.5", "--epochs", "1"]).opts == ["OPTIM.LR", "-0.5"]


def test_shared_parser_on_a_bare_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--flag", action="store_true")
    cli.add_overrides(p)
    args = cli.parse_with_overrides(p, ["A", "1", "--flag", "B", "2", "--", "C", "3"])
    assert args.flag and args.opts == ["A", "1", "B", "2", "C", "3"]
    assert cli.parse_with_overrides(p, []).opts == []


def test_search_command_line_end_to_end(tmp_path, run_cli):
    args = SEARCH.parse_args(["--out", str(tmp_path / "s"), "MODEL.WIDTH", "16", "--no-progress", "SEARCH.EPOCHS", "2"])
    cfg = SEARCH.build_cfg(args)
    assert (cfg.MODEL.WIDTH, cfg.SEARCH.EPOCHS, cfg.OUT_DIR) == (16, 2, str(tmp_path / "s"))
    # through main(): the override after a flag reaches validation (an odd width is refused by name)
    rc, _, err = run_cli(SEARCH.main, ["--out", str(tmp_path / "s"), "--no-progress", "MODEL.WIDTH", "7", "--epochs", "1"])
    assert rc == 2 and "MODEL.WIDTH" in err and "odd number" not in err and not (tmp_path / "s").exists()


# ---- (b) an int for a float key ---------------------------------------------------------------------
def test_int_for_a_float_key_is_a_float(tmp_path):
    cfg = load_cfg(train_defaults(), None, ["OPTIM.LR", "1", "MODEL.DROP_PATH", "0"])
    assert cfg.OPTIM.LR == 1.0 and type(cfg.OPTIM.LR) is float and type(cfg.MODEL.DROP_PATH) is float
    (tmp_path / "c.yaml").write_text("OPTIM:\n  LR: 1\n  MOMENTUM: 0\n")
    cfg = load_cfg(train_defaults(), str(tmp_path / "c.yaml"))
    assert (cfg.OPTIM.LR, cfg.OPTIM.MOMENTUM) == (1.0, 0.0) and type(cfg.OPTIM.MOMENTUM) is float
    cfg = load_cfg(study_defaults(), None, ["TASK_RECIPES.ROT.OPTIM.LR", "1", "STUDY.LEASE_SECONDS", "600",
                                            "STUDY.TRAINER", "fake"], validate_study_cfg)
    assert cfg.TASK_RECIPES.ROT.OPTIM.LR == 1.0 and cfg.STUDY.LEASE_SECONDS == 600.0


@pytest.mark.parametrize("opts", [["OPTIM.LR", "fast"], ["OPTIM.LR", "True"], ["TRAIN.EPOCHS", "2.5"],
                                  ["MODEL.WIDTH", "wide"]], ids=["str-for-float", "bool-for-float", "float-for-int",
                                                                  "str-for-int"])
def test_other_type_mismatches_are_still_refused(opts, tmp_path):
    with pytest.raises(ConfigError, match="Type mismatch"):
        load_cfg(train_defaults(), None, opts)
    key, value = opts
    (tmp_path / "c.yaml").write_text(f"{key.split('.')[0]}:\n  {key.split('.')[1]}: {value}\n")
    with pytest.raises(ConfigError, match="Type mismatch"):
        load_cfg(train_defaults(), str(tmp_path / "c.yaml"))


# ---- (c) rank_corr.py --help lists every subcommand --------------------------------------------------
@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_rank_corr_help_lists_subcommands(flag, run_cli):
    rc, out, _ = run_cli(RANK_CORR.main, [flag])
    assert rc == 0 and set(RANK_CORR.COMMANDS) == {"run", "analyze", "proxies", "sample", "status"}
    lines = out.splitlines()
    for cmd, desc in RANK_CORR.COMMANDS.items():
        assert sum(1 for ln in lines if ln.split()[:1] == [cmd] and ln.strip().endswith(desc)) == 1, cmd
    rc, out, _ = run_cli(RANK_CORR.main, ["run", "--help"])   # a subcommand's own help is unchanged
    assert rc == 0 and "--num-archs" in out


# ---- (d) analyze --metric final beside best; (e) a refused study names the differing keys ---------
def test_final_analysis_beside_best_and_refusal_names_keys(tmp_path, run_cli):
    run = tmp_path / "run"
    rc, _, err = run_cli(RANK_CORR.main, ["--trainer", "fake", "--num-archs", "5", "--tasks", "cls,rot", "--out", str(run),
                                        "STUDY.BOOTSTRAP", "20"])
    assert rc == 0, err
    best = (run / "analysis" / "correlations.md").read_text()
    rc, out, _ = run_cli(RANK_CORR.main, ["analyze", str(run), "--metric", "final"])
    assert rc == 0 and f"written to {run / 'analysis_final'}/" in out
    assert (run / "analysis" / "correlations.md").read_text() == best    # best analysis kept
    assert json.loads((run / "analysis_final" / "correlations.json").read_text())["metric"] == "final"
    assert json.loads((run / "analysis" / "correlations.json").read_text())["metric"] == "best"
    rc, _, _ = run_cli(RANK_CORR.main, ["analyze", str(run)])      # default metric: the same place as before
    assert rc == 0 and (run / "analysis" / "correlations.md").read_text() == best

    rc, _, err = run_cli(RANK_CORR.main, ["--out", str(run), "MODEL.WIDTH", "8", "--no-analyze", "OPTIM.LR", "1",
                                        "NUM_THREADS", "2"])
    assert rc == 2 and err.count("\n") == 1 and "different configuration" in err
    assert "MODEL.WIDTH 4 -> 8, OPTIM.LR 0.1 -> 1.0;" in err and "NUM_THREADS" not in err   # not a training key
