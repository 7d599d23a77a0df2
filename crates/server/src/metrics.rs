//! Pod metrics (`podMetrics` of the objects answer) as Backstage's backend makes them: its `topPods` (from
//! `@kubernetes/client-node`) over the entity's pods and their `metrics.k8s.io` PodMetrics, then
//! `toClientSafePodMetrics`.
//!
//! The arithmetic is JavaScript's, so that the numbers are the ones Backstage shows: a quantity with a `n`, `u`
//! or `m` suffix (or none) is a float (`250m` → `0.25`), one with a decimal or binary suffix (`128Mi`) an
//! integer that goes out as a string (a JavaScript BigInt); sums of a float and an integer round the float.
//! The memory request of a pod is summed as `topPods` sums it (over the limits so far), quirk included.

use serde::Serialize;
use serde_json::Value;

/// A JavaScript number or BigInt.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    Number(f64),
    Big(i128),
}

impl Serialize for Scalar {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            // JSON.stringify writes a whole number without a fraction.
            Self::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 =>
            {
                #[expect(clippy::cast_possible_truncation, reason = "a whole number below 2^53")]
                serializer.serialize_i64(n as i64)
            }
            Self::Number(n) => serializer.serialize_f64(n),
            // Backstage's toClientSafeResource writes a BigInt as its decimal string.
            Self::Big(n) => serializer.serialize_str(&n.to_string()),
        }
    }
}

/// client-node's `add`: numbers add as numbers; with a BigInt, the number is rounded first.
fn add(a: Scalar, b: Scalar) -> Scalar {
    let round = |n: f64| {
        #[expect(clippy::cast_possible_truncation, reason = "Math.round of a quantity")]
        let rounded = (n + 0.5).floor() as i128;
        rounded
    };
    match (a, b) {
        (Scalar::Number(x), Scalar::Number(y)) => Scalar::Number(x + y),
        (Scalar::Number(x), Scalar::Big(y)) => Scalar::Big(round(x) + y),
        (Scalar::Big(x), Scalar::Number(y)) => Scalar::Big(x + round(y)),
        (Scalar::Big(x), Scalar::Big(y)) => Scalar::Big(x + y),
    }
}

/// client-node's `quantityToScalar` (a quantity it cannot read is 0).
fn quantity(text: Option<&str>) -> Scalar {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Scalar::Number(0.0) };
    let split = text.rfind(|c: char| c.is_ascii_digit() || c == '.').map_or(0, |i| i + 1);
    let (number, suffix) = text.split_at(split);
    let float = |divisor: f64| Scalar::Number(number.parse::<f64>().map_or(0.0, |n| n / divisor));
    let big = |factor: i128| {
        // BigInt("1.5") fails in JavaScript; the nearest whole number stands in for it here.
        let whole = number.parse::<i128>().ok().or_else(|| {
            #[expect(clippy::cast_possible_truncation, reason = "a quantity's whole part")]
            number.parse::<f64>().ok().map(|n| n.round() as i128)
        });
        Scalar::Big(whole.unwrap_or(0).saturating_mul(factor))
    };
    match suffix {
        "" => float(1.0),
        "n" => float(1e9),
        "u" => float(1e6),
        "m" => float(1e3),
        "k" => big(1_000),
        "M" => big(1_000_000),
        "G" => big(1_000_000_000),
        "T" => big(1_000_000_000_000),
        "P" => big(1_000_000_000_000_000),
        "E" => big(1_000_000_000_000_000_000),
        "Ki" => big(1 << 10),
        "Mi" => big(1 << 20),
        "Gi" => big(1 << 30),
        "Ti" => big(1 << 40),
        "Pi" => big(1 << 50),
        "Ei" => big(1 << 60),
        _ => Scalar::Number(0.0),
    }
}

/// Backstage's `ClientCurrentResourceUsage`.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Usage {
    current_usage: Scalar,
    request_total: Scalar,
    limit_total: Scalar,
}

/// Backstage's `ClientContainerStatus`.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ContainerUsage {
    container: String,
    cpu_usage: Usage,
    memory_usage: Usage,
}

/// Backstage's `ClientPodStatus`: the pod as the API server listed it, and its usage.
#[derive(Serialize, Debug, PartialEq)]
pub(crate) struct PodUsage {
    pod: Value,
    memory: Usage,
    cpu: Usage,
    containers: Vec<ContainerUsage>,
}

/// client-node's `topPods` over `pods` (a pod list's items) and `metrics` (a PodMetrics list's items).
pub(crate) fn top_pods(pods: Vec<Value>, metrics: &[Value]) -> Vec<PodUsage> {
    let zero = Scalar::Number(0.0);
    pods.into_iter()
        .map(|pod| {
            let pod_metrics = metrics.iter().find(|m| m["metadata"]["name"] == pod["metadata"]["name"]);
            let mut containers = Vec::new();
            let (mut cpu_now, mut mem_now) = (zero, zero);
            let (mut cpu_requests, mut cpu_limits, mut mem_requests, mut mem_limits) = (zero, zero, zero, zero);
            for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
                let resources = &container["resources"];
                let total = |kind: &str, resource: &str| add(zero, quantity(resources[kind][resource].as_str()));
                let (cpu_request, cpu_limit) = (total("requests", "cpu"), total("limits", "cpu"));
                let (mem_request, mem_limit) = (total("requests", "memory"), total("limits", "memory"));
                cpu_requests = add(cpu_requests, cpu_request);
                cpu_limits = add(cpu_limits, cpu_limit);
                // As topPods sums it: over the limits so far.
                mem_requests = add(mem_limits, mem_request);
                mem_limits = add(mem_limits, mem_limit);
                let name = &container["name"];
                let measured = pod_metrics
                    .and_then(|m| m["containers"].as_array())
                    .and_then(|cs| cs.iter().find(|c| &c["name"] == name));
                if let Some(measured) = measured {
                    let cpu = quantity(measured["usage"]["cpu"].as_str());
                    let memory = quantity(measured["usage"]["memory"].as_str());
                    cpu_now = add(cpu_now, cpu);
                    mem_now = add(mem_now, memory);
                    containers.push(ContainerUsage {
                        container: measured["name"].as_str().unwrap_or_default().to_owned(),
                        cpu_usage: Usage { current_usage: cpu, request_total: cpu_request, limit_total: cpu_limit },
                        memory_usage: Usage {
                            current_usage: memory,
                            request_total: mem_request,
                            limit_total: mem_limit,
                        },
                    });
                }
            }
            PodUsage {
                pod,
                memory: Usage { current_usage: mem_now, request_total: mem_requests, limit_total: mem_limits },
                cpu: Usage { current_usage: cpu_now, request_total: cpu_requests, limit_total: cpu_limits },
                containers,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_as_client_node_reads_them() {
        assert_eq!(quantity(Some("250m")), Scalar::Number(0.25));
        assert_eq!(quantity(Some("1500000n")), Scalar::Number(0.0015));
        assert_eq!(quantity(Some("2")), Scalar::Number(2.0));
        assert_eq!(quantity(Some("128Mi")), Scalar::Big(134_217_728));
        assert_eq!(quantity(Some("1k")), Scalar::Big(1000));
        assert_eq!(quantity(None), Scalar::Number(0.0));
        assert_eq!(add(Scalar::Number(0.4), Scalar::Big(10)), Scalar::Big(10));
        assert_eq!(add(Scalar::Number(0.5), Scalar::Big(10)), Scalar::Big(11));
        assert_eq!(
            serde_json::to_string(&[Scalar::Number(3.0), Scalar::Number(0.25), Scalar::Big(7)]).unwrap(),
            r#"[3,0.25,"7"]"#
        );
    }

    #[test]
    fn a_pods_usage_sums_its_containers() {
        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}},
            {"name": "sidecar", "resources": {}},
        ]}});
        let metrics = [serde_json::json!({"metadata": {"name": "p"}, "containers": [
            {"name": "app", "usage": {"cpu": "20m", "memory": "30Mi"}},
            {"name": "sidecar", "usage": {"cpu": "5m", "memory": "10Mi"}},
        ]})];
        let usage = serde_json::to_value(top_pods(vec![pod], &metrics)).unwrap();
        assert_eq!(usage[0]["cpu"], serde_json::json!({"currentUsage": 0.025, "requestTotal": 0.1, "limitTotal": 1}));
        assert_eq!(usage[0]["memory"]["currentUsage"], "41943040");
        assert_eq!(usage[0]["memory"]["limitTotal"], "134217728");
        assert_eq!(usage[0]["containers"][1]["container"], "sidecar");
        assert_eq!(usage[0]["containers"][0]["memoryUsage"]["requestTotal"], "67108864");
    }
}
