#!/usr/bin/env bash
# A local cluster with hometwin running the Cape Town home:
#   kind cluster → image built and loaded → chart installed → Home applied.
# Needs: docker, kind, kubectl, helm.  Usage: scripts/kind-up.sh [cluster-name]
set -euo pipefail

CLUSTER="${1:-hometwin}"
IMAGE="hometwin:dev"
NAMESPACE="hometwin"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
kubectl config use-context "kind-$CLUSTER"

docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

helm upgrade --install hometwin "$ROOT/helm/hometwin" \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository=hometwin --set image.tag=dev --set image.pullPolicy=Never \
  --wait --timeout 3m

kubectl apply -n "$NAMESPACE" -f "$ROOT/examples/homes/cape-town.yaml"
kubectl wait -n "$NAMESPACE" --for=jsonpath='{.status.phase}'=Running home/cape-town --timeout=5m || true
kubectl get homes,deployments -n "$NAMESPACE"
