//! End-to-end tests of kubeauth against a real kube-apiserver, etcd and kubectl; the tests are in `e2e/` and
//! `token_webhook/`. Run them with `cargo xtask test`, which provides the binaries.
