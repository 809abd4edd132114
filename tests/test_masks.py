import torch

from unlearn_core.masks import DynamicMask, MaskConfig, MaskedAdam, StaticMask, build_mask


def _shapes():
    return {"a": torch.Size([16, 8]), "b": torch.Size([32, 32])}


def test_dynamic_mask_keeps_density_per_matrix_across_updates():
    cfg = MaskConfig(kind="dynamic", density=0.5, update_interval=5, turnover=0.2, stop_fraction=0.8)
    mask = build_mask(cfg, _shapes())
    g = torch.Generator().manual_seed(0)
    mask.accumulate({n: torch.randn(s, generator=g) for n, s in _shapes().items()})
    mask.initialise()
    before = {n: m.clone() for n, m in mask.masks.items()}
    changes = 0
    for step in range(1, 101):
        mask.accumulate({n: torch.randn(s, generator=g) for n, s in _shapes().items()})
        changed = mask.maybe_update(step, 100)
        changes += changed
        for n, m in mask.masks.items():
            assert int(m.sum()) == m.numel() // 2, (step, n)
        if changed:
            assert mask.last_turnover > 0
    assert changes > 5
    assert any(not torch.equal(before[n], mask.masks[n]) for n in before)
    # no updates after stop_fraction of training
    assert not mask.maybe_update(85, 100) and not mask.maybe_update(95, 100)


def test_dynamic_mask_grows_the_strongest_and_drops_the_weakest():
    cfg = MaskConfig(kind="dynamic", density=0.5, update_interval=1, turnover=0.5, stop_fraction=1.0)
    mask = DynamicMask({"w": torch.Size([4])}, cfg)
    mask.accumulate({"w": torch.tensor([4.0, 3.0, 2.0, 1.0])})
    mask.initialise()
    assert mask.masks["w"].tolist() == [True, True, False, False]
    mask.accumulate({"w": torch.tensor([0.1, 5.0, -9.0, 0.2])})
    assert mask.maybe_update(1, 100)
    # tau ~ 0.5 of 2 active -> swap one: drop entry 0 (|0.1|), grow entry 2 (|-9|)
    assert mask.masks["w"].tolist() == [False, True, True, False]
    assert mask.grown["w"].tolist() == [False, False, True, False]


def test_turnover_decays_by_cosine_to_zero():
    mask = DynamicMask({"w": torch.Size([10])}, MaskConfig(turnover=0.2, stop_fraction=0.8))
    taus = [mask.turnover_at(s, 1000) for s in (0, 200, 400, 600, 799, 800, 900)]
    assert abs(taus[0] - 0.2) < 1e-9 and abs(taus[2] - 0.1) < 1e-9
    assert taus == sorted(taus, reverse=True) and taus[-2] == 0.0 and taus[-1] == 0.0


def test_static_mask_uses_one_global_threshold_and_never_changes():
    cfg = MaskConfig(kind="static", density=0.5)
    mask = StaticMask({"big": torch.Size([4]), "small": torch.Size([4])}, cfg)
    mask.accumulate({"big": torch.full((4,), 10.0), "small": torch.full((4,), 0.1)})
    mask.initialise()
    assert mask.masks["big"].all() and not mask.masks["small"].any()  # global, not per matrix
    mask.accumulate({"big": torch.zeros(4), "small": torch.full((4,), 100.0)})
    assert not mask.maybe_update(100, 200)
    assert mask.masks["big"].all()


def test_masked_entries_get_no_update():
    p = {"w": torch.zeros(6)}
    opt = MaskedAdam(p, lr=0.1)
    m = {"w": torch.tensor([True, False, True, False, True, False])}
    for _ in range(5):
        opt.step({"w": torch.ones(6)}, m)
    assert (p["w"][~m["w"]] == 0).all()
    assert (p["w"][m["w"]] < -0.4).all()
    # once an entry leaves the mask it is frozen, even with momentum accumulated
    m2 = {"w": torch.tensor([False, False, True, False, True, False])}
    frozen = p["w"][0].item()
    opt.step({"w": torch.ones(6)}, m2)
    assert p["w"][0].item() == frozen
    opt.reset_entries({"w": torch.tensor([True] + [False] * 5)})
    assert opt.m["w"][0] == 0 and opt.v["w"][0] == 0


def test_full_mask_trains_everything():
    mask = build_mask(MaskConfig(kind="none"), _shapes())
    assert mask.density() == 1.0 and not mask.maybe_update(100, 200)


def test_masked_adam_with_a_full_mask_is_torch_adam():
    torch.manual_seed(0)
    start = torch.randn(5, 7)
    ours = {"w": start.clone()}
    ref = start.clone().requires_grad_(True)
    opt, torch_opt = MaskedAdam(ours, lr=0.01), torch.optim.Adam([ref], lr=0.01)
    full = {"w": torch.ones(5, 7, dtype=torch.bool)}
    for _ in range(10):
        g = torch.randn(5, 7)
        opt.step({"w": g}, full)
        ref.grad = g.clone()
        torch_opt.step()
    assert torch.allclose(ours["w"], ref.detach(), atol=1e-6)
