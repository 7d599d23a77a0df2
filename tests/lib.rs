//! End-to-end tests of kubeauth against a real kube-apiserver, etcd and kubectl, and the other real peers:
//! the library's in `e2e/` and one folder per provider, the command's in `cli/` (run as a user runs it, built
//! from the kubeauth-cli library as `kubeauth-under-test`). Run them with `cargo xtask test`, which provides
//! the binaries.
