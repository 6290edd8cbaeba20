#!/usr/bin/env bash
# Spark on Kubernetes starts the driver pod with `driver ARGS` and executor pods with
# `executor` (their settings in SPARK_* variables), as Spark's own image entrypoint does;
# anything else runs as given: `longmix prepare ...`, `spark-submit ...`, `spark-class ...`.
set -euo pipefail

launcher=()
if command -v tini >/dev/null; then
  launcher=(tini -s --)
fi

case "${1:-}" in
  driver)
    shift
    exec "${launcher[@]}" "$SPARK_HOME/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    mapfile -t java_options < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//')
    exec "${launcher[@]}" "$JAVA_HOME/bin/java" "${java_options[@]}" \
      -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
      -cp "$SPARK_HOME/jars/*${SPARK_CLASSPATH:+:$SPARK_CLASSPATH}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" \
      --executor-id "$SPARK_EXECUTOR_ID" \
      --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" \
      --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" \
      --podName "$SPARK_EXECUTOR_POD_NAME"
    ;;
  *)
    exec "${launcher[@]}" "$@"
    ;;
esac
