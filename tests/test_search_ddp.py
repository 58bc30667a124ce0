"""Two CPU processes (gloo): weights and alphas stay identical on every rank."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unnas.config import load_cfg
from unnas.search import Searcher
from unnas.search.config import search_defaults, validate_search_cfg

OPTS = ["SEARCH.STEPS_PER_EPOCH", "0", "MODEL.WIDTH", "4", "MODEL.DEPTH", "3", "SEARCH.BATCH_SIZE", "8", "SEARCH.EPOCHS", "1",
        "DATA.MAX_TRAIN", "64", "DATA.SYNTHETIC.NUM_TRAIN", "64", "DATA.SYNTHETIC.NUM_TEST", "16",
        "TASK.NAME", "cls", "DATA.NUM_WORKERS", "0"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out, order):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = load_cfg(search_defaults(), None, OPTS + ["OUT_DIR", out, "SEARCH.ORDER", order], validate_search_cfg)
    s = Searcher(cfg, out, hooks=[])
    init = [p.detach().clone() for p in s.arch.parameters()]
    s.run()
    torch.save({"alphas": [p.detach() for p in s.arch.parameters()], "init": init,
                "weights": [p.detach() for p in s.model.parameters()],
                "batch0": s.w_stream.batch_indices(0, 0) if hasattr(s.w_stream, "batch_indices") else None},
               os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _run(tmp_path, order):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), order), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for a, b, i in zip(r0["alphas"], r1["alphas"], r0["init"]):
        assert torch.equal(a, b)
        assert not torch.equal(a, i)  # alphas were updated
    for a, b in zip(r0["weights"], r1["weights"]):
        assert torch.allclose(a, b, atol=1e-6)


def test_ddp_first_order_alphas_identical(tmp_path):
    _run(tmp_path, "first")


def test_ddp_second_order_alphas_identical(tmp_path):
    _run(tmp_path, "second")
