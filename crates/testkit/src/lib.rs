//! Test environments for kubeauth: certificates, and (with the envtest binaries) a real etcd and
//! kube-apiserver on loopback.
//!
//! Dev-only: nothing here is meant for production code.

pub mod pki;
