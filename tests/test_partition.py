import pytest
import torch

from gm_core.partition import GroupPartition, PartitionError, bayer_order, from_phases, to_phases


def test_parse_even_and_default_order():
    p = GroupPartition.parse("kc=4,grid=2x2", 192)
    assert p.num_groups == 16 and p.slices == (48,) * 4
    # slices outer, phases inner; 2x2 phases (0,0),(1,1),(0,1),(1,0): a checkerboard first
    assert [ph for _, ph in p.order[:4]] == [0, 3, 1, 2]
    assert p.to_spec() == "kc=4,grid=2x2"


@pytest.mark.parametrize("spec", ["g1", "kc=1,grid=1x1", "slices=32+32+64+64,grid=4x4",
                                  "kc=8,grid=2x2,order=phase-major", "kc=2,grid=4x4,phases=raster",
                                  "slices=16+16+32+64+64,grid=2x2"])
def test_spec_and_dict_round_trip(spec):
    p = GroupPartition.parse(spec, 192)
    assert GroupPartition.parse(p.to_spec(), 192) == p
    assert GroupPartition.from_dict(p.to_dict()) == p
    # every (phase, channel) element is coded at exactly one step
    so = p.step_of()
    assert so.min() >= 0 and so.max() == p.num_groups - 1


@pytest.mark.parametrize("spec,msg", [("kc=5", "divide"), ("slices=10+10", "sum to"),
                                      ("grid=9x9", "out of range"), ("foo=1", "unknown"),
                                      ("kc", "key=value"), ("grid=ax2", "bad value"),
                                      ("order=zigzag", "order")])
def test_invalid_specs_are_rejected(spec, msg):
    with pytest.raises(PartitionError, match=msg):
        GroupPartition.parse(spec, 192)


def test_custom_order_must_cover_every_group():
    with pytest.raises(PartitionError):
        GroupPartition(8, (4, 4), (1, 1), ((0, 0), (0, 0)))


def test_bayer_4x4_is_a_permutation_that_starts_coarse():
    o = bayer_order(4, 4)
    assert sorted(o) == list(range(16))
    assert o[:4] == [0, 10, 2, 8]  # (0,0),(2,2),(0,2),(2,0): a stride-2 lattice first


def test_phases_are_pixel_unshuffle():
    t = torch.randn(2, 3, 8, 12)
    assert torch.equal(from_phases(to_phases(t, (2, 4)), (2, 4)), t)
    ref = torch.nn.functional.pixel_unshuffle(t, 2).reshape(2, 3, 4, 4, 6).transpose(1, 2)
    assert torch.equal(to_phases(t, (2, 2)), ref)
