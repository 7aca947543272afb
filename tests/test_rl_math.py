"""RLHF arithmetic against plain NumPy loops: ranking loss, rewards, GAE, whitening, KL, clipped losses."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxllm.rl import math as rl

RNG = np.random.default_rng(0)


def _np_logsig(x):
    return -np.log1p(np.exp(-x))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_ranking_loss_is_the_mean_pairwise_loss(k):
    scores = RNG.normal(size=(5, 4)).astype(np.float32)
    n = np.array([k, k, 2, k, 3 if k >= 3 else 2])
    loss, correct, pairs = rl.ranking_loss(jnp.asarray(scores), jnp.asarray(n), margin=0.1)
    want, want_correct, want_pairs = 0.0, 0, 0
    for b in range(5):
        ps = list(itertools.combinations(range(n[b]), 2))
        want += np.mean([-_np_logsig(scores[b, i] - scores[b, j] - 0.1) for i, j in ps])
        want_correct += sum(scores[b, i] > scores[b, j] for i, j in ps)
        want_pairs += len(ps)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert int(correct) == want_correct and int(pairs) == want_pairs
    if k == 2:  # K = 2 is the usual pairwise loss
        two, _, _ = rl.ranking_loss(jnp.asarray(scores[:, :2]), jnp.full(5, 2))
        np.testing.assert_allclose(float(two), np.sum(-_np_logsig(scores[:, 0] - scores[:, 1])), rtol=1e-5)


def test_last_index_reads_the_last_real_token_with_left_or_right_padding():
    right = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 0]])
    assert rl.last_index(jnp.asarray(right)).tolist() == [2, 4]
    assert rl.last_index(jnp.asarray(left)).tolist() == [4, 3]


def test_kl_estimators():
    lp, ref = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    d = lp - ref
    np.testing.assert_allclose(rl.kl_estimate(jnp.asarray(lp), jnp.asarray(ref), "k1"), d, rtol=1e-5)
    np.testing.assert_allclose(rl.kl_estimate(jnp.asarray(lp), jnp.asarray(ref), "k2"), 0.5 * d ** 2, rtol=1e-5)
    np.testing.assert_allclose(rl.kl_estimate(jnp.asarray(lp), jnp.asarray(ref), "k3"), np.exp(-d) - 1 + d, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError):
        rl.kl_estimate(jnp.asarray(lp), jnp.asarray(ref), "k9")


def test_shaped_rewards_and_missing_eos_penalty():
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    lp, ref = RNG.normal(size=(2, 4)).astype(np.float32), RNG.normal(size=(2, 4)).astype(np.float32)
    score = rl.penalize_missing_eos(jnp.asarray([2.0, 3.0]), jnp.asarray([True, False]), 1.5)
    assert score.tolist() == [2.0, 1.5]
    got = np.asarray(rl.shaped_rewards(score, jnp.asarray(lp), jnp.asarray(ref), jnp.asarray(mask), 0.1))
    want = -0.1 * (lp - ref) * mask
    want[0, 2] += 2.0
    want[1, 3] += 1.5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _np_gae(r, v, m, gamma, lam):
    b, t = r.shape
    adv = np.zeros_like(r)
    for i in range(b):
        last = 0.0
        for j in reversed(range(t)):
            if not m[i, j]:
                continue
            nv = v[i, j + 1] if j + 1 < t and m[i, j + 1] else 0.0
            delta = r[i, j] + gamma * nv - v[i, j]
            last = delta + gamma * lam * last
            adv[i, j] = last
    return adv, (adv + v) * m


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.9)])
def test_gae_matches_a_loop_and_is_zero_after_eos(gamma, lam):
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], np.float32)
    r, v = RNG.normal(size=mask.shape).astype(np.float32), RNG.normal(size=mask.shape).astype(np.float32)
    adv, ret = rl.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(mask), gamma, lam)
    want_adv, want_ret = _np_gae(r, v, mask, gamma, lam)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, want_ret, rtol=1e-5, atol=1e-6)
    assert (np.asarray(adv)[mask == 0] == 0).all()


def test_whitening_uses_population_statistics_over_masked_entries():
    x = RNG.normal(3.0, 2.0, size=(4, 5)).astype(np.float32)
    mask = (RNG.random((4, 5)) < 0.7).astype(np.float32)
    sel = x[mask == 1]
    want = (x - sel.mean()) / np.sqrt(sel.var() + 1e-8) * mask  # np.var: population
    np.testing.assert_allclose(rl.masked_whiten(jnp.asarray(x), jnp.asarray(mask)), want, rtol=1e-4, atol=1e-5)
    kept = (x - sel.mean()) / np.sqrt(sel.var() + 1e-8) * mask + sel.mean() * mask
    np.testing.assert_allclose(rl.masked_whiten(jnp.asarray(x), jnp.asarray(mask), shift_mean=False), kept, rtol=1e-4, atol=1e-5)


def test_adaptive_kl_controller():
    assert rl.adaptive_kl_beta(0.1, 6.0, 10, 6.0, 100) == pytest.approx(0.1)
    assert rl.adaptive_kl_beta(0.1, 12.0, 10, 6.0, 100) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at 0.2
    assert rl.adaptive_kl_beta(0.1, 5.4, 10, 6.0, 100) == pytest.approx(0.1 * (1 - 0.1 * 0.1))


def test_clipped_policy_and_value_losses():
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    lp, old = RNG.normal(size=(2, 4)).astype(np.float32) * 0.3, RNG.normal(size=(2, 4)).astype(np.float32) * 0.3
    adv = RNG.normal(size=(2, 4)).astype(np.float32)
    loss, m = rl.policy_loss(jnp.asarray(lp), jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask), 0.2)
    ratio = np.exp(lp - old)
    per = np.maximum(-adv * ratio, -adv * np.clip(ratio, 0.8, 1.2))
    np.testing.assert_allclose(float(loss), (per * mask).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(m["clip_frac"]), ((-adv * np.clip(ratio, 0.8, 1.2) > -adv * ratio) * mask).sum())
    np.testing.assert_allclose(float(m["approx_kl"]), (0.5 * (lp - old) ** 2 * mask).sum(), rtol=1e-5)

    v, vold, ret = (RNG.normal(size=(2, 4)).astype(np.float32) for _ in range(3))
    got = rl.value_loss(jnp.asarray(v), jnp.asarray(vold), jnp.asarray(ret), jnp.asarray(mask), 0.2)
    vc = vold + np.clip(v - vold, -0.2, 0.2)
    np.testing.assert_allclose(float(got), (0.5 * np.maximum((v - ret) ** 2, (vc - ret) ** 2) * mask).sum(), rtol=1e-5)
