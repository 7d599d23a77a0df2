//! End-to-end tests of kubeauth against real peers; the tests are in `e2e/`.
