//! What the kubeconfig locator costs each time the clusters are listed (`kubeauth serve` lists them for every
//! request): the files are looked at again, and an unchanged file hands out the same list.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use kubeauth_cluster_locator::{ClusterLocator as _, KubeconfigLocator, KubeconfigSettings};

fn kubeconfig(contexts: usize) -> String {
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for i in 0..contexts {
        text.push_str(&format!(
            "- name: c{i}\n  cluster:\n    server: https://10.0.{i}.1:6443\n    certificate-authority-data: {}\n",
            "QUJD".repeat(300)
        ));
    }
    text.push_str("users:\n");
    for i in 0..contexts {
        text.push_str(&format!("- name: u{i}\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      args: [eks, get-token, --cluster-name, c{i}]\n      interactiveMode: Never\n"));
    }
    text.push_str("contexts:\n");
    for i in 0..contexts {
        text.push_str(&format!("- name: ctx{i}\n  context: {{cluster: c{i}, user: u{i}}}\n"));
    }
    text
}

fn listing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("config");
    std::fs::write(&path, kubeconfig(20)).expect("write");
    let locator = KubeconfigLocator::new(KubeconfigSettings::file(&path), "kubeconfig").expect("a locator");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    c.bench_function("kubeconfig locator: list 20 contexts of an unchanged file", |b| {
        b.iter(|| runtime.block_on(locator.clusters()).expect("clusters"));
    });
}

criterion_group!(benches, listing);
criterion_main!(benches);
