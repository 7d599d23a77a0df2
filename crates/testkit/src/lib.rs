//! Test environments for kubeauth: a real etcd and kube-apiserver on loopback, and protocol peers.
