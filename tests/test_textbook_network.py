"""Our fixed network computes exactly the textbook DARTS / UnNAS evaluation network.

``benchmarks/textbook_network.py`` is NetworkCIFAR / NetworkImageNet written as the DARTS and
UnNAS code write them (one module per op, NCHW fp32, in-place drop path with a Bernoulli mask,
in-place ReLU at the auxiliary head's input). From the same weights, a training step must give
the same outputs (main and auxiliary logits), the same gradient for every parameter, the same BN
running statistics and the same parameters after an SGD step, and eval mode the same logits.

Drop path: both networks draw one Bernoulli mask of shape (N, 1, 1, 1) per non-Identity op
output from the default generator, in the same order (ours applies op 1's mask before running
op 2, DARTS runs both ops first, but the ops draw no random numbers, so the sequence of draws is
the same). Seeding the generator identically before each forward therefore makes the masks, and
the comparison, exact by construction; ``test_drop_path_draws_the_same_masks`` checks that the
masks really are drawn and dropped.

Sizes: the textbook's auxiliary heads only work on the maps they were designed for (CIFAR 8x8,
ImageNet 7x7), so the CIFAR stem runs at 32 px and the ImageNet stem at 224 px; depth 4 puts the
auxiliary head after cell 2, not after the last cell (the release's in-place ReLU would also
rectify the final features there).
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from search_spaces import get_space  # noqa: E402
from search_spaces.darts.genotype import Genotype  # noqa: E402
from search_spaces.darts.network import build_network  # noqa: E402
from textbook_network import key_map, load_from_ours, textbook_like  # noqa: E402
from unnas.tasks.base import ClassifierHead  # noqa: E402
from unnas.tasks.jig import JigsawHead  # noqa: E402

# every op, strided and not, in a reduction cell: Zero and FactorizedReduce at stride 2, both
# pools, dilated and separable convs, the 7x1/1x7 conv, an Identity skip inside a reduction cell
REDUCTION_OPS = Genotype(
    normal=(("sep_conv_5x5", 0), ("dil_conv_5x5", 1), ("none", 0), ("avg_pool_3x3", 2),
            ("max_pool_3x3", 1), ("skip_connect", 3), ("sep_conv_7x7", 4), ("conv_7x1_1x7", 0)),
    normal_concat=(2, 4, 5),
    reduce=(("skip_connect", 0), ("none", 1), ("avg_pool_3x3", 0), ("max_pool_3x3", 1),
            ("dil_conv_3x3", 1), ("sep_conv_3x3", 2), ("conv_7x1_1x7", 1), ("skip_connect", 4)),
    reduce_concat=(3, 4, 5),
)
GENOTYPES = {"DARTS_V2": None, "reduction_ops": REDUCTION_OPS}
SIZES = {"cifar": 32, "imagenet": 224}
NUM_CLASSES = 5

pytestmark = pytest.mark.usefixtures("one_thread")


def _genotype(name):
    return get_space("darts").resolve(name) if GENOTYPES[name] is None else GENOTYPES[name]


def _close(a, b, what):
    """Equal up to float32 summation-order noise, relative to the tensor's scale."""
    scale = float(b.abs().max()) + 1.0
    err = float((a.float() - b.float()).abs().max())
    assert err <= 1e-4 * scale + 1e-5, f"{what}: max |diff| {err:.3g} at scale {scale:.3g}"


def _pair(genotype, stem, aux, width=4, depth=4, head=None, task="cls"):
    torch.manual_seed(0)
    head = head or (lambda c: ClassifierHead(c, NUM_CLASSES))
    ours = build_network(genotype, head, NUM_CLASSES, 3, width, depth, stem, False, aux)
    torch.manual_seed(1)   # a different initialisation: only the copy makes them equal
    textbook = textbook_like(ours, task)
    load_from_ours(textbook, ours)
    return ours, textbook


def _optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4, nesterov=True)


def _train_step(model, x, drop_prob, set_drop):
    """One forward (seeded: the drop-path masks), a generic loss, backward, SGD step."""
    model.train()
    set_drop(model, drop_prob)
    opt = _optimizer(model)
    opt.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    out = model(x)
    logits, aux = out if isinstance(out, tuple) else (out, None)
    g = torch.Generator().manual_seed(7)
    loss = (logits * torch.randn(logits.shape, generator=g)).sum()
    if aux is not None:
        loss = loss + 0.4 * (aux * torch.randn(aux.shape, generator=g)).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    stats = {n: t.clone() for n, t in model.state_dict().items()}   # BN statistics after the forward
    opt.step()
    return logits.detach(), None if aux is None else aux.detach(), grads, stats


def _set_ours(model, p):
    model.trunk.drop_prob = p


def _set_textbook(model, p):
    model.drop_path_prob = p


def _check(ours, textbook, x, drop_prob, channels_last=False):
    """``channels_last``: ours runs channels-last (as the trainer runs it), the textbook NCHW, both
    in float64. Why float64: in float32 the two formats use different kernels (channels-last batch
    norm accumulates in float32, NCHW in double), and a deep BN network amplifies that rounding to
    ~1e-2 relative gradient differences (measured at DARTS_V2, ImageNet stem, width 4, batch 4:
    NCHW float32 vs float64 5e-6, channels-last float32 vs float64 6e-3; at width 16, batch 32,
    CIFAR stem even NCHW float32 differs from float64 by 1e-2). In float64 every channels-last
    code path of ours (gradient formats, shared ReLUs, in-place node sums) runs and must agree
    with the textbook to the tolerance below."""
    keys = key_map(ours, textbook)
    x_ours = x
    if channels_last:
        ours.double().to(memory_format=torch.channels_last)
        textbook.double()
        x = x.double()
        x_ours = x.contiguous(memory_format=torch.channels_last)
    y_o, aux_o, g_o, s_o = _train_step(ours, x_ours, drop_prob, _set_ours)
    y_t, aux_t, g_t, s_t = _train_step(textbook, x, drop_prob, _set_textbook)
    _close(y_o, y_t, "training logits")
    assert (aux_o is None) == (aux_t is None)
    if aux_o is not None:
        _close(aux_o, aux_t, "auxiliary logits")
    params = dict(ours.named_parameters())
    assert len(g_o) == len(g_t) == len(params)
    for name in params:                       # every parameter's gradient
        _close(g_o[name], g_t[keys[name]], f"gradient of {name}")
    for name, t in s_o.items():               # BN running statistics (and batch counts) after the forward
        _close(t, s_t[keys[name]], f"{name} after the training forward")
    tb_state = textbook.state_dict()
    for name, t in ours.state_dict().items():  # parameters after the SGD step
        _close(t, tb_state[keys[name]], f"{name} after the SGD step")
    ours.eval(), textbook.eval()
    with torch.no_grad():
        expected = textbook(x)
    with torch.inference_mode():              # as the trainer evaluates ours
        _close(ours(x_ours), expected, "eval-mode logits")
    return y_o


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("drop_prob", [0.0, 0.3])
@pytest.mark.parametrize("aux", [False, True])
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("genotype", list(GENOTYPES))
def test_fixed_network_matches_textbook(genotype, stem, aux, drop_prob, channels_last):
    ours, textbook = _pair(_genotype(genotype), stem, aux)
    x = torch.randn(4, 3, SIZES[stem], SIZES[stem], generator=torch.Generator().manual_seed(2))
    _check(ours, textbook, x, drop_prob, channels_last)


def test_drop_path_draws_the_same_masks():
    # with drop path on, the training logits must differ from a run without it (masks are drawn
    # and applied) and still agree between the two networks (the same masks)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plain = _check(*_pair(_genotype("DARTS_V2"), "cifar", True), x, 0.0)
    dropped = _check(*_pair(_genotype("DARTS_V2"), "cifar", True), x, 0.5)
    assert float((plain - dropped).abs().max()) > 1e-3


def test_jigsaw_classifier_matches_textbook():
    # siamese trunk over the tiles, slot-major concatenation into one linear layer (pycls' Classifier)
    ours, textbook = _pair(_genotype("DARTS_V2"), "cifar", False, head=lambda c: JigsawHead(c, 4, NUM_CLASSES),
                           task="jig")
    tiles = torch.randn(3 * 4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    _check(ours, textbook, tiles, 0.2)
    with torch.no_grad():   # the release's 5-D layout gives the same logits
        _close(textbook(tiles.view(3, 4, 3, 16, 16)), ours(tiles), "5-D jigsaw input")


def test_mapping_fails_loudly():
    g = _genotype("DARTS_V2")
    ours, _ = _pair(g, "cifar", True)
    _, other = _pair(g, "cifar", True, width=6)
    with pytest.raises(ValueError, match="does not match"):
        load_from_ours(other, ours)
    _, no_aux = _pair(g, "cifar", False)
    with pytest.raises(ValueError, match="auxiliary head"):
        load_from_ours(no_aux, ours)
    _, shallower = _pair(g, "cifar", True, depth=3)
    with pytest.raises(ValueError, match="cells"):
        load_from_ours(shallower, ours)
