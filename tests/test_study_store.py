"""Results store: atomic claims, leases, exactly-once results, shards, config fingerprint."""
import pytest

from search_spaces import get_space
from unnas.study.jobs import Job, make_jobs, parse_shard, shard_of
from unnas.study.sampling import sample_archs
from unnas.study.store import Store, StoreError
from unnas.config import ConfigError


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "study.sqlite")
    archs = sample_archs(get_space("darts"), 3, seed=0)
    s.init_study(archs, make_jobs([a.id for a in archs], ["cls", "rot"], [1, 2]), "cfg", "fp")
    yield s
    s.close()


def test_claim_complete_and_exactly_once(store):
    assert store.counts()["total"] == 12
    job, tok = store.claim("w1", lease=60)
    assert job == Job("a0000", "cls", 1)                    # seed-major, then arch, then task
    assert store.counts()["running"] == 1
    assert store.complete(job, tok, "w1", {"best": 90.0, "final": 89.0, "wall_time": 1.0})
    # a late second result for the same key is discarded, never stored twice
    assert not store.complete(job, "other-token", "w2", {"best": 1.0, "final": 1.0})
    res = store.results()
    assert len(res) == 1 and res[0]["best"] == 90.0 and res[0]["worker"] == "w1"
    assert [a["outcome"] for a in store.attempts()] == ["done"]


def test_stale_lease_is_reclaimed_and_max_attempts(tmp_path, store):
    job, tok = store.claim("w1", lease=10, now=1000.0)
    store.db.execute("UPDATE jobs SET heartbeat = 1000 WHERE token = ?", (tok,))
    other = Store(tmp_path / "study.sqlite")
    j2, tok2 = other.claim("w2", lease=10, now=1005.0)        # live lease: the next job
    assert j2 != job
    j3, tok3 = other.claim("w2", lease=10, now=1020.0)        # w1 silent for 20 s > lease: taken over
    assert j3 == job and tok3 != tok
    assert not store.heartbeat(job, tok)                       # w1 learns it lost the job
    assert other.heartbeat(job, tok3)
    outcomes = [(a["worker"], a["outcome"]) for a in other.attempts()]
    assert ("w1", "lost") in outcomes
    # a job whose workers keep dying is failed after max_attempts claims
    other.db.execute("UPDATE jobs SET heartbeat = 0 WHERE token = ?", (tok3,))
    assert other.claim("w3", lease=10, max_attempts=2, tasks=["cls"], now=2000.0)[0] != job
    failed = other.jobs("failed")
    assert len(failed) == 1 and "lost 2 times" in failed[0]["error"]
    other.close()


def test_fail_release_and_retry(store):
    job, tok = store.claim("w1", lease=60)
    store.fail(job, tok, "boom")
    assert store.counts()["failed"] == 1
    j2, tok2 = store.claim("w1", lease=60)
    store.release(j2, tok2)
    assert store.counts()["pending"] == 11
    assert store.reset_failed() == 1 and store.counts()["pending"] == 12


def test_fingerprint_and_genotype_conflicts(tmp_path, store):
    archs = sample_archs(get_space("darts"), 4, seed=0)
    assert store.init_study(archs, make_jobs([a.id for a in archs], ["cls"], [1]), "cfg", "fp") == 1
    with pytest.raises(StoreError, match="different configuration"):
        store.init_study(archs, [], "cfg", "another")
    other = sample_archs(get_space("darts"), 4, seed=1)
    with pytest.raises(StoreError, match="bound to another genotype"):
        store.init_study(other, [], "cfg", "fp")


def test_keys_added_later_keep_the_fingerprint_at_their_neutral_value():
    """A training key added to the toolkit after a study started must not orphan its store while
    the key holds the value that means "as before"; any other value is a different training."""
    from unnas.study.config import _NEUTRAL_WHEN, fingerprint, study_defaults

    def parent(node, path):
        for part in path:
            node = node[part]
        return node

    def other(value):
        return value + ["x"] if isinstance(value, list) else (not value if isinstance(value, bool) else value + 1)

    cfg = study_defaults()
    base = fingerprint(cfg)
    for key, neutral in _NEUTRAL_WHEN.items():
        *path, leaf = key.split(".")
        older = cfg.clone()
        del parent(older, path)[leaf]                          # the config before the key existed
        assert fingerprint(older) == base, key
        changed = cfg.clone()
        parent(changed, path)[leaf] = other(neutral)
        assert fingerprint(changed) != base, key
    older = cfg.clone()
    del older["TASK"]["MULTI"], older["FITNESS"]               # nodes added later: absent = at their neutral values
    assert fingerprint(older) == base


def test_shards_partition_jobs_and_the_store_honours_them(store):
    jobs = make_jobs([f"x{i}" for i in range(50)], ["cls", "rot", "col", "jig"], [1, 2, 3])
    for n in (1, 2, 3, 7):
        parts = [{j for j in jobs if shard_of(j, n) == i} for i in range(n)]
        assert sum(len(p) for p in parts) == len(jobs) and set().union(*parts) == set(jobs)
        if n > 1:
            assert min(len(p) for p in parts) > 0.5 * len(jobs) / n      # roughly balanced
    claimed = []
    while (c := store.claim("w", 60, shard=(1, 3))) is not None:
        claimed.append(c[0])
    all_jobs = make_jobs(["a0000", "a0001", "a0002"], ["cls", "rot"], [1, 2])
    assert set(claimed) == {j for j in all_jobs if shard_of(j, 3) == 1}
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("4/4", "1", "a/b", "-1/3", "0/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_exported_results_restore_into_a_fresh_store_of_the_same_study_only(tmp_path, store):
    """Finished jobs outlive their run directory: export, then import into a new store of the same
    study marks exactly those jobs done with the same numbers; another configuration is refused."""
    from unnas.study.portable import export_results, import_results

    for _ in range(3):
        job, tok = store.claim("w1", lease=60)
        assert store.complete(job, tok, "w1", {"best": 50.0 + job.seed, "final": 49.0, "curve": [{"epoch": 1}],
                                               "params": 123, "wall_time": 2.0, "config": "x" * 1000})
    path = tmp_path / "done.jsonl"
    assert export_results(store, path) == 3
    assert "xxxx" not in path.read_text()                       # the job's config is not exported

    fresh = Store(tmp_path / "fresh" / "study.sqlite")
    archs = sample_archs(get_space("darts"), 3, seed=0)
    fresh.init_study(archs, make_jobs([a.id for a in archs], ["cls", "rot"], [1, 2]), "cfg", "fp")
    assert import_results(fresh, path) == 3 and import_results(fresh, path) == 0   # idempotent
    key = lambda r: (r["arch_id"], r["task"], r["seed"], r["best"], r["final"], r["wall"])
    assert sorted(map(key, fresh.results())) == sorted(map(key, store.results()))
    assert fresh.counts()["done"] == 3 and fresh.counts()["pending"] == 9
    assert {a["outcome"] for a in fresh.attempts()} == {"imported"}
    assert fresh.results()[0]["result"]["params"] == 123
    assert {r["worker"] for r in fresh.results()} == {"imported:w1"}
    # exported again and moved once more, a job still names the worker that trained it, marked once
    again = tmp_path / "again.jsonl"
    assert export_results(fresh, again) == 3
    moved = Store(tmp_path / "moved" / "study.sqlite")
    moved.init_study(archs, make_jobs([a.id for a in archs], ["cls", "rot"], [1, 2]), "cfg", "fp")
    assert import_results(moved, again) == 3 and {r["worker"] for r in moved.results()} == {"imported:w1"}
    moved.close()
    fresh.close()

    other = Store(tmp_path / "other" / "study.sqlite")
    other.init_study(archs, make_jobs([a.id for a in archs], ["cls"], [1]), "cfg", "another-fingerprint")
    with pytest.raises(StoreError, match="another configuration"):
        import_results(other, path)
    other.close()


def test_recipe_nodes_of_later_tasks_keep_old_fingerprints_until_set():
    """The (empty) recipe nodes of issue 15's tasks leave a study's fingerprint as it was before they
    existed, so committed stores and exported jobs still match; a recipe set in them changes it."""
    from unnas.study.config import _ADDED_NODES, fingerprint, job_cfg, study_defaults

    cfg = study_defaults()
    older = cfg.clone()
    for node in _ADDED_NODES:
        del older.TASK_RECIPES[node.split(".")[1]]
    assert fingerprint(older) == fingerprint(cfg)
    count_lr = cfg.clone()
    count_lr.merge_from_other_cfg(type(cfg)({"TASK_RECIPES": {"COUNT": {"OPTIM": {"LR": 0.025}}}}))
    assert fingerprint(count_lr) != fingerprint(cfg)
    assert job_cfg(count_lr, "count", 1).OPTIM.LR == 0.025 and job_cfg(count_lr, "cls", 1).OPTIM.LR == cfg.OPTIM.LR
