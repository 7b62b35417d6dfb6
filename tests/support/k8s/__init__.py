"""The harness of the real-cluster tier, used by tests and benchmarks alike: the pinned binaries
(:mod:`.binaries`), a control plane on loopback (:mod:`.controlplane`, :mod:`.pki`, :mod:`.processes`),
real nodes (:mod:`.realnode`, :mod:`.netbridge`), the pinned helm and the chart's scenarios
(:mod:`.helm`), servers run as pods (:mod:`.incluster`), and small helpers for tests (:mod:`.helpers`,
:mod:`.operator_support`). Session fixtures that several test folders share are in :mod:`.fixtures`,
a pytest plugin that tests/conftest.py registers.

A package (rather than loose modules) so the modules import each other relatively and cannot clash with
other folders' module names, whatever import mode pytest runs in.
"""
