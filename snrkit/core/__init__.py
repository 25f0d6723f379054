"""The core every family builds on: problems, laws, estimators, specs, validation and pytree plumbing.

- [`problem`][snrkit.core.problem]: what a law is computed from (loss, parameters, data).
- [`spec`][snrkit.core.spec]: how one estimate is drawn (probes, tangents, combination).
- [`law`][snrkit.core.law]: the law base class (moments, bias, MSE, SNR, efficiency, sampling).
- [`estimator`][snrkit.core.estimator]: the estimator base class (`given`, the real
  estimator with `jax.jvp`, cost, description).
- [`sharding`][snrkit.core.sharding]: samples spread over devices and processes, with
  the results of one device.
- [`threefry`][snrkit.core.threefry]: JAX's threefry draws, with the hash's rounds
  unrolled (the same bits, faster on a CPU), and normals of odd length off XLA's slow path.
- [`allocator`][snrkit.core.allocator]: glibc's `malloc` told to keep the blocks XLA
  frees after every call (what snrkit's commands do first).
- [`validation`][snrkit.core.validation], [`tree`][snrkit.core.tree],
  [`precision`][snrkit.core.precision], [`numerics`][snrkit.core.numerics],
  [`io`][snrkit.core.io]: shared checks and plumbing.
"""
