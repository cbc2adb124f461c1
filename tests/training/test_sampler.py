"""training.sampler: the training data order as a function of (seed, epoch, step)."""
import numpy as np
import pytest

from training.sampler import EpochBatchSampler, epoch_permutation


def test_permutation_is_seeded_by_seed_and_epoch():
    expected = np.random.default_rng([5, 0, 2]).permutation(10)  # [seed, stream 0, epoch]
    assert epoch_permutation(10, 5, 2).tolist() == expected.tolist()
    assert sorted(expected.tolist()) == list(range(10))
    assert epoch_permutation(10, 5, 3).tolist() != expected.tolist()


def test_single_process_batches_are_consecutive_slices_of_the_epoch_permutation():
    sampler = EpochBatchSampler(10, batch_size=4, seed=1)
    sampler.set_epoch(3)
    order = epoch_permutation(10, 1, 3).tolist()
    batches = list(sampler)
    assert len(sampler) == sampler.steps_per_epoch == 2  # 10 // 4; the last 2 items dropped
    assert batches == [[(3, i) for i in order[0:4]], [(3, i) for i in order[4:8]]]
    sampler.set_epoch(3, start_step=1)  # resuming after the first step
    assert list(sampler) == batches[1:] and len(sampler) == 1


@pytest.mark.parametrize('world_size, accumulate', [(2, 1), (1, 4), (2, 2)])
def test_ranks_and_micro_batches_split_each_step_of_the_single_process_order(world_size,
                                                                            accumulate):
    single = EpochBatchSampler(24, batch_size=8, seed=4)
    single.set_epoch(1)
    ranks = []
    for rank in range(world_size):
        sampler = EpochBatchSampler(24, 8, 4, rank, world_size, accumulate)
        sampler.set_epoch(1)
        micro = list(sampler)
        assert len(micro) == len(sampler) == 3 * accumulate
        assert all(len(m) == 8 // (world_size * accumulate) for m in micro)
        ranks.append(micro)
    for step, batch in enumerate(single):
        # Step s: micro-batch k of rank r is part k * world_size + r of the step's batch.
        parts = [ranks[r][step * accumulate + k] for k in range(accumulate)
                 for r in range(world_size)]
        assert sum(parts, []) == batch


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ValueError, match='batch_size 6 is not divisible by world size 2 x '
                                         'accumulate 2'):
        EpochBatchSampler(24, 6, 0, 0, 2, 2)
