import numpy as np
import pytest
import torch

from engine.training.ohem import grouped_ohem_loss, ohem_loss, ohem_select


def test_selects_the_hardest_fraction_of_the_whole_batch_not_per_image():
    # Image 0 holds all the hard instances: batch-level mining must take them all.
    loss = torch.tensor([[9.0, 8.0, 7.0, 6.0], [0.1, 0.2, 0.3, 0.4]])
    valid = torch.ones(2, 4, dtype=torch.bool)
    mask = ohem_select(loss, valid, 0.5)
    assert mask.tolist() == [[True, True, True, True], [False, False, False, False]]


def test_invalid_instances_are_never_selected_and_the_count_follows_valid_ones():
    loss = torch.tensor([[100.0, 1.0, 2.0], [3.0, 50.0, 4.0]])
    valid = torch.tensor([[False, True, True], [True, False, True]])
    mask = ohem_select(loss, valid, 0.5)  # 4 valid -> 2 kept
    assert mask.tolist() == [[False, False, False], [True, False, True]]
    assert ohem_select(loss, valid, 0.01).sum() == 1  # at least one


def test_gradients_reach_only_the_selected_instances():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(0, 1, (4, 24)), dtype=torch.float32, requires_grad=True)
    valid = torch.from_numpy(rng.random((4, 24)) > 0.3)
    per = x ** 2
    loss = ohem_loss(per, valid, 0.25)
    loss.backward()
    mask = ohem_select(per, valid, 0.25)
    assert (x.grad[~mask] == 0).all()
    assert (x.grad[mask] != 0).all()
    k = int(np.ceil(0.25 * int(valid.sum())))
    assert int(mask.sum()) == k
    expected = torch.sort(per[valid].detach(), descending=True).values[:k].mean()
    assert torch.isclose(loss, expected)
    # every selected instance is at least as hard as every valid unselected one
    assert per[mask].min() >= per[valid & ~mask].max()


def test_no_valid_instance_gives_a_connected_zero_and_bad_fraction_is_refused():
    x = torch.ones(2, 3, requires_grad=True)
    loss = ohem_loss(x * 2, torch.zeros(2, 3, dtype=torch.bool), 0.5)
    loss.backward()
    assert float(loss.detach()) == 0.0 and (x.grad == 0).all()
    with pytest.raises(ValueError):
        ohem_select(x, torch.ones(2, 3, dtype=torch.bool), 0.0)


def test_grouped_ohem_mines_each_group_apart_and_weights_it_by_its_share():
    # Rows 0-1 are hard-set crops (big losses), rows 2-3 replay (small): ranked together the
    # replay would get no gradient at all.
    per = torch.tensor([[9.0, 8.0, 7.0, 6.0], [5.0, 4.0, 3.0, 2.0],
                        [0.4, 0.3, 0.2, 0.1], [0.8, 0.7, 0.6, 0.5]], requires_grad=True)
    valid = torch.ones(4, 4, dtype=torch.bool)
    groups = torch.tensor([0, 0, 1, 1])
    together = ohem_loss(per, valid, 0.5)
    together.backward()
    assert (per.grad[2:] == 0).all()
    per.grad = None
    loss = grouped_ohem_loss(per, valid, 0.5, groups)
    loss.backward()
    assert torch.isclose(loss, 0.5 * torch.tensor([9.0, 8, 7, 6]).mean() + 0.5 * torch.tensor([0.8, 0.7, 0.6, 0.5]).mean())
    assert (per.grad[3] != 0).all() and (per.grad[2] == 0).all() and (per.grad[0] != 0).all()
    # one group only: plain OHEM
    assert torch.isclose(grouped_ohem_loss(per, valid, 0.5, torch.zeros(4, dtype=torch.long)), together)
