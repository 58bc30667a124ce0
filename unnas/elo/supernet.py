"""``ELO.NETWORK supernet``: an evaluation for a search objective. Instead of pretraining a fixed
network, the candidate's weights drive a short DARTS search (:class:`unnas.search.Searcher`, task
``multi`` with the candidate's weights, or a single task for the report's runs), and the fitness
and the probe read the supernet trunk's features under the search's final alphas.

The search's config is the search's defaults with every key the run's config also has taken from
it: ``SEARCH.*`` and ``ARCH.*`` (the ELo config carries the search's nodes), the weights' ``OPTIM``
(the run's training recipe), ``MODEL`` (space, width, depth, stem), ``DATA``, ``TASK``, ``SEED``;
the search's epochs are the candidate's (``SEARCH.EPOCHS``, or ``ELO.FINAL_EPOCHS`` for the
report's runs) and its threads ``NUM_THREADS``.

Features: the trunk's last feature map, global average pooled
(:func:`unnas.train.fitness.pooled_features`), of images fed as the task feeds them
(``make_input``), under the final alphas, with BN as the search evaluates (``SEARCH.EVAL_BN``:
batch statistics by default, since a short search's running statistics lag its weights), in
batches of ``SEARCH.BATCH_SIZE`` in data-set order.

* fitness: :func:`unnas.elo.fitness.elo_fitness` of the first ``FITNESS.IMAGES`` test images
  (0 = the test split's ``DATA.MAX_TEST``), as the fixed network's;
* probe: a linear classifier of the labels on the frozen features, scikit-learn's multinomial
  logistic regression (L-BFGS, L2 with C = 1, features standardised with the training images'
  mean and deviation) fitted on the search's training images (both halves, unaugmented) and
  scored (top-1, %) on the test split. ``ELO.PROBE_EPOCHS`` / ``ELO.PROBE_LR`` (the trainer's
  probe) do not apply: the trainer builds fixed networks only.

The result also records the search's derived genotype (``derived_genotype``: the dict,
``derived_genotype_repr``: the text; ``genotype`` is the study's, the fixed network's) and its
last epoch's statistics (``search``).

Determinism and resumption: the search resumes exactly from its checkpoint in the job directory
(the Searcher's design), the features are computed without randomness and k-means and the
logistic regression are seeded or deterministic, so a rerun gives the same result. The search's
checkpoint is deleted once the features are taken (unless ``STUDY.KEEP_CHECKPOINTS``); a worker
killed after that reruns the search from scratch, to the same result.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from unnas.config import ConfigError

from .evaluate import derived_cfg
from .jobs import Candidate, load_candidate

PROBE_MAX_ITER = 1000       # L-BFGS iterations of the logistic regression (converges in far fewer at these sizes)


def search_cfg(cfg, candidate: Candidate, out_dir):
    """The search config of ``candidate`` from the run's config (see the module doc)."""
    from unnas.search.config import search_defaults, validate_search_cfg

    keys = {"TASK.NAME": candidate.task, "SEARCH.EPOCHS": int(candidate.epochs),
            "SEARCH.NUM_THREADS": int(cfg.NUM_THREADS), "OUT_DIR": str(out_dir)}
    if candidate.task == "multi":
        keys["TASK.MULTI.WEIGHTS"] = [float(w) for w in candidate.weights]
    return derived_cfg(search_defaults(), cfg, keys, validate_search_cfg)


def check_search_cfg(cfg) -> None:
    """One line for a run config whose searches cannot run: the search's validation of an
    evaluation's and a report run's search, and a space without a supernet."""
    from search_spaces import get_space

    from .evaluate import candidate_epochs

    space = get_space(cfg.MODEL.SPACE)
    if not hasattr(space, "build_supernet"):
        raise ConfigError(f"ELO.NETWORK supernet: the {space.name} space (MODEL.SPACE) has no supernet to search; "
                          "use MODEL.SPACE darts or ELO.NETWORK fixed")
    equal = tuple(1.0 for _ in cfg.TASK.MULTI.TASKS)
    for epochs in dict.fromkeys((candidate_epochs(cfg), int(cfg.ELO.FINAL_EPOCHS or candidate_epochs(cfg)))):
        search_cfg(cfg, Candidate("check", "check", 0, 0, "multi", equal, epochs, False), "")


def _features(searcher, dataset, indices, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) pooled supernet-trunk features and (N,) labels of ``dataset[indices]`` (the first
    ``limit``; 0 = all), under the final alphas, BN as the search evaluates."""
    from unnas.engine import build_stream
    from unnas.train.fitness import pooled_features

    cfg = searcher.cfg
    stream = build_stream(dataset, indices, cfg.SEARCH.BATCH_SIZE, cfg.SEED, 0, searcher.ctx, cfg.DATA.NUM_WORKERS,
                          shuffle=False, drop_last=False)
    labels = []

    def batches():          # the labels beside the images pooled_features reads
        for images, y in stream.epoch(0):
            labels.append(y)
            yield images, y

    saved = searcher._eval_mode()
    try:
        with torch.no_grad():
            weights = searcher.arch.weights()
            feats = pooled_features(lambda x: searcher.model.trunk(x, weights), batches(), searcher.task.make_input,
                                    searcher.device, limit, searcher.step_fn.autocast)
    finally:
        searcher._restore_bn(saved)
        searcher.model.train()
    return feats, torch.cat(labels)[:len(feats)]


def probe_top1(train_x, train_y, test_x, test_y) -> float:
    """Top-1 (%) on the test features of a multinomial logistic regression fitted on the training
    features (standardised with their own mean and deviation). Deterministic."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_x, test_x = np.asarray(train_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(np.unique(train_y)) < 2:
        raise ConfigError(f"the supernet's probe needs training images of at least 2 classes, got {len(train_y)} "
                          f"image(s) of {len(np.unique(train_y))}; raise DATA.MAX_TRAIN")
    scaler = StandardScaler().fit(train_x)
    with warnings.catch_warnings(), threadpool_limits(limits=1):   # one thread: the sums do not depend on the cores
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=1.0, max_iter=PROBE_MAX_ITER).fit(scaler.transform(train_x), train_y)
    return 100.0 * float((model.predict(scaler.transform(test_x)) == test_y).mean())


def evaluate_supernet_candidate(job, cfg, out_dir) -> dict:
    """The default evaluator of ELO.NETWORK supernet (see the module doc)."""
    from unnas.data import build_dataset
    from unnas.search import NonFiniteLossError, make_searcher

    from .fitness import elo_fitness, worst_fitness

    t0 = time.time()
    out_dir = Path(out_dir)
    cand = load_candidate(cfg, job.task)
    result = {"key": cand.key, "task": cand.task, "weights": list(cand.weights), "diverged": False, "probe_top1": None,
              "finetune_top1": None, "network": "supernet"}
    scfg = search_cfg(cfg, cand, out_dir)
    try:
        searcher = make_searcher(scfg, out_dir, [])
        searcher.resume()
        summary = searcher.run()
    except NonFiniteLossError as exc:
        result.update(fitness=worst_fitness(cfg.FITNESS.CLUSTERS, cfg.FITNESS.ZIPF_S), diverged=True,
                      error=" ".join(str(exc).split())[:300])
    else:
        result.update(derived_genotype=summary["genotype"], derived_genotype_repr=summary["genotype_repr"],
                      search=summary["final"])
        test = build_dataset(scfg.DATA, "test")
        n_test = len(test) if not scfg.DATA.MAX_TEST else min(len(test), scfg.DATA.MAX_TEST)
        f = cfg.FITNESS
        test_x, test_y = _features(searcher, test, range(n_test))
        fitness_x = test_x[:f.IMAGES] if f.IMAGES else test_x
        try:
            result["fitness"] = float(elo_fitness(fitness_x, f.CLUSTERS, f.ZIPF_S, f.SEED).value)
        except ValueError as exc:
            raise ConfigError(f"FITNESS: {exc} (FITNESS.IMAGES, FITNESS.CLUSTERS, DATA.MAX_TEST)") from None
        if cand.probe:
            train_x, train_y = _features(searcher, searcher.dataset, sorted(searcher.weight_idx + searcher.arch_idx))
            result["probe_top1"] = probe_top1(train_x, train_y, test_x, test_y)
        if not cfg.STUDY.KEEP_CHECKPOINTS:
            searcher.checkpoint_path.unlink(missing_ok=True)
    result.update(best=-result["fitness"], final=-result["fitness"], metric="-fitness", wall_time=time.time() - t0)
    return result


__all__ = ["evaluate_supernet_candidate", "search_cfg", "check_search_cfg", "probe_top1"]
