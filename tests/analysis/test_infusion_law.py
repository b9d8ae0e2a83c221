"""The infusion law on noiseless synthetic curves: the fit recovers (a, b, c), F* = b/c, the
collapse point solves P = P*/2, and the size power law predicts the largest size."""

import numpy as np
import pytest

from icl_lab.analysis import infusion_law as law_lib

F = np.array([1, 3, 10, 30, 100, 300], np.float64)


def test_fit_recovers_a_b_c_from_a_noiseless_curve_and_the_optimum_is_b_over_c():
  truth = law_lib.Law(0.3, 0.8, 0.02, 1.0)
  got = law_lib.fit(F, law_lib.predict(truth, F))
  assert (got.a, got.b, got.c) == pytest.approx((0.3, 0.8, 0.02), abs=1e-6) and got.r2 == pytest.approx(1.0)
  assert got.optimum == pytest.approx(40.0, rel=1e-6)  # b/c
  assert got.peak == pytest.approx(0.3 * 40 ** 0.8 * np.exp(-0.8), rel=1e-6)
  assert law_lib.fit(F, law_lib.predict(truth, F) * 0 + 1e-9).a == pytest.approx(law_lib.P_FLOOR)  # floored
  assert law_lib.Law(1.0, 1.0, -0.1, 1.0).optimum == float("inf") == law_lib.Law(1.0, -1.0, 0.1, 1.0).optimum


def test_collapse_point_of_a_known_curve():
  # b = 1: P = a·F·exp(−cF) falls to half its peak at c·F = x with x·e^(1−x) = 1/2, x = −W₋₁(−1/(2e)).
  law = law_lib.Law(2.0, 1.0, 0.05, 1.0)
  fc = law_lib.collapse_point(law)
  assert fc * 0.05 == pytest.approx(2.678346990, abs=1e-6)
  assert law_lib.predict(law, fc) == pytest.approx(law.peak / 2, rel=1e-9) and fc > law.optimum
  law = law_lib.Law(0.5, 0.6, 0.01, 1.0)
  fc = law_lib.collapse_point(law, 0.25)
  assert law_lib.predict(law, fc) == pytest.approx(law.peak / 4, rel=1e-9) and fc > law.optimum
  assert law_lib.collapse_point(law_lib.Law(1.0, 0.5, -0.01, 1.0)) == float("inf")


def test_power_law_predicts_the_largest_size_and_interpolation_in_log_f():
  sizes = np.array([1e3, 2e3, 4e3, 1.6e4])
  ys = 3.0 * sizes ** -0.4
  k, gamma = law_lib.power_law(sizes[:-1], ys[:-1])
  assert (k, gamma) == pytest.approx((3.0, -0.4), rel=1e-9)
  assert law_lib.extrapolate(sizes, ys) == pytest.approx(ys[-1], rel=1e-9)
  assert law_lib.interpolate_log([1, 100], [0.0, 1.0], 10) == pytest.approx(0.5)


def test_bootstrap_of_identical_facts_has_no_spread_and_summary_is_json_safe():
  truth = law_lib.Law(0.3, 0.8, 0.02, 1.0)
  p = law_lib.predict(truth, F)
  values_FxN = np.repeat(p[:, None], 20, axis=1)
  out = law_lib.summary(F, p, values_FxN, lambda v: v.mean(1), n_boot=20)
  assert out["optimum"] == pytest.approx(40.0) and out["intervals"]["optimum"] == pytest.approx([40.0, 40.0])
  assert out["collapse"] == pytest.approx(out["intervals"]["collapse"][0])
  flat = law_lib.summary(F, np.ones_like(F))  # no collapse: c = 0
  assert flat["optimum"] is None and flat["collapse"] is None and flat["peak"] is None


def test_crossing_of_a_known_curve():
  # P = ln F / ln 10⁴ reaches 0.5 at F = 100 exactly, and the log-F interpolation is exact on it.
  f = np.array([1.0, 10, 30, 300, 1000, 10000])
  assert law_lib.crossing(f, np.log(f) / np.log(1e4)) == pytest.approx(100.0)
  assert law_lib.crossing(f, np.log(f) / np.log(1e4), level=0.75) == pytest.approx(1000.0)
  # The first crossing counts, not a later one; none when the level is never reached.
  assert law_lib.crossing([1, 10, 100, 1000], [0.0, 0.6, 0.2, 0.9]) == pytest.approx(10 ** (0.5 / 0.6))
  assert law_lib.crossing([1, 10], [0.1, 0.2]) is None
  assert law_lib.crossing([1, 10], [0.7, 0.9]) == 1.0
