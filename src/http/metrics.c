/*
 * metrics.c — counters and latency histograms for /metrics, in the
 * Prometheus text format. Touched only on the loop thread: no locks.
 */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "http/http.h"

#define MAX_SERIES 256
#define MAX_COUNTERS 32
static const double bucket_ms[] = {1,   2,   5,    10,   25,   50,
                                   100, 250, 500, 1000, 2500, 10000};
#define N_BUCKETS (sizeof bucket_ms / sizeof bucket_ms[0])

typedef struct series {
  const char *route; /* static: the route's name */
  int status;
  uint64_t count;
} series;

typedef struct histogram {
  const char *route;
  uint64_t buckets[N_BUCKETS]; /* cumulative at render time */
  uint64_t count;
  double sum_ms;
} histogram;

typedef struct counter {
  const char *name; /* static */
  uint64_t value;
} counter;

struct http_metrics {
  series series[MAX_SERIES];
  size_t nseries;
  histogram hist[64];
  size_t nhist;
  counter counters[MAX_COUNTERS];
  size_t ncounters;
};

http_metrics *http_metrics_new(void) { return calloc(1, sizeof(http_metrics)); }
void http_metrics_free(http_metrics *m) { free(m); }

void http_metrics_request(http_server *srv, const char *route, int status,
                          double ms) {
  http_metrics *m = srv->metrics;
  size_t i;
  for (i = 0; i < m->nseries; i++)
    if (m->series[i].route == route && m->series[i].status == status)
      break;
  if (i == m->nseries && i < MAX_SERIES)
    m->series[m->nseries++] = (series){route, status, 0};
  if (i < MAX_SERIES)
    m->series[i].count++;
  for (i = 0; i < m->nhist; i++)
    if (m->hist[i].route == route)
      break;
  if (i == m->nhist && i < 64) {
    memset(&m->hist[i], 0, sizeof m->hist[i]);
    m->hist[i].route = route;
    m->nhist++;
  }
  if (i < 64) {
    histogram *h = &m->hist[i];
    for (size_t b = 0; b < N_BUCKETS; b++)
      if (ms <= bucket_ms[b]) {
        h->buckets[b]++;
        break;
      }
    h->count++;
    h->sum_ms += ms;
  }
}

void http_metrics_add(http_server *srv, const char *name, uint64_t n) {
  http_metrics *m = srv->metrics;
  for (size_t i = 0; i < m->ncounters; i++)
    if (strcmp(m->counters[i].name, name) == 0) {
      m->counters[i].value += n;
      return;
    }
  if (m->ncounters < MAX_COUNTERS)
    m->counters[m->ncounters++] = (counter){name, n};
}

static uint64_t counter_value(const http_metrics *m, const char *name) {
  for (size_t i = 0; i < m->ncounters; i++)
    if (strcmp(m->counters[i].name, name) == 0)
      return m->counters[i].value;
  return 0;
}

char *http_metrics_text(http_server *srv, size_t *len) {
  http_metrics *m = srv->metrics;
  engram_stats st;
  engram_get_stats(srv->eg, &st);
  buf b;
  buf_init(&b);
  buf_adds(&b, "# HELP engram_http_requests_total HTTP requests by route and "
               "status.\n# TYPE engram_http_requests_total counter\n");
  for (size_t i = 0; i < m->nseries; i++)
    buf_printf(&b, "engram_http_requests_total{route=\"%s\",status=\"%d\"} "
                   "%llu\n",
               m->series[i].route, m->series[i].status,
               (unsigned long long)m->series[i].count);
  buf_adds(&b, "# HELP engram_http_request_duration_seconds Time from request "
               "to response written.\n# TYPE "
               "engram_http_request_duration_seconds histogram\n");
  for (size_t i = 0; i < m->nhist; i++) {
    const histogram *h = &m->hist[i];
    uint64_t cum = 0;
    for (size_t k = 0; k < N_BUCKETS; k++) {
      cum += h->buckets[k];
      buf_printf(&b,
                 "engram_http_request_duration_seconds_bucket{route=\"%s\","
                 "le=\"%g\"} %llu\n",
                 h->route, bucket_ms[k] / 1000.0, (unsigned long long)cum);
    }
    buf_printf(&b,
               "engram_http_request_duration_seconds_bucket{route=\"%s\",le="
               "\"+Inf\"} %llu\n"
               "engram_http_request_duration_seconds_sum{route=\"%s\"} %g\n"
               "engram_http_request_duration_seconds_count{route=\"%s\"} "
               "%llu\n",
               h->route, (unsigned long long)h->count, h->route,
               h->sum_ms / 1000.0, h->route, (unsigned long long)h->count);
  }
  buf_printf(&b,
             "# TYPE engram_http_requests_in_flight gauge\n"
             "engram_http_requests_in_flight %llu\n"
             "# TYPE engram_http_connections gauge\n"
             "engram_http_connections %llu\n"
             "# TYPE engram_streams_open gauge\n"
             "engram_streams_open %llu\n"
             "# TYPE engram_queries_running gauge\n"
             "engram_queries_running %llu\n"
             "# TYPE engram_threadpool_tasks gauge\n"
             "engram_threadpool_tasks %llu\n"
             "# TYPE engram_stream_items_failed_total counter\n"
             "engram_stream_items_failed_total %llu\n"
             "# TYPE engram_context_timed_out_total counter\n"
             "engram_context_timed_out_total %llu\n"
             "# TYPE engram_store_writes_total counter\n"
             "engram_store_writes_total %llu\n"
             "# TYPE engram_store_write_batches_total counter\n"
             "engram_store_write_batches_total %llu\n",
             (unsigned long long)srv->inflight,
             (unsigned long long)srv->connections,
             (unsigned long long)st.streams_open,
             (unsigned long long)st.queries_running,
             (unsigned long long)st.pool_tasks,
             (unsigned long long)st.items_failed,
             (unsigned long long)counter_value(m, "context_timed_out"),
             (unsigned long long)st.writes_committed,
             (unsigned long long)st.write_batches);
  buf_adds(&b, "# HELP engram_store_write_batch_size Ops per group commit.\n"
               "# TYPE engram_store_write_batch_size histogram\n");
  uint64_t cum = 0, limit = 1;
  for (unsigned i = 0; i + 1 < ENGRAM_BATCH_BUCKETS; i++, limit *= 4) {
    cum += st.write_batch_sizes[i];
    buf_printf(&b, "engram_store_write_batch_size_bucket{le=\"%llu\"} %llu\n",
               (unsigned long long)limit, (unsigned long long)cum);
  }
  cum += st.write_batch_sizes[ENGRAM_BATCH_BUCKETS - 1];
  buf_printf(&b,
             "engram_store_write_batch_size_bucket{le=\"+Inf\"} %llu\n"
             "engram_store_write_batch_size_sum %llu\n"
             "engram_store_write_batch_size_count %llu\n",
             (unsigned long long)cum, (unsigned long long)st.writes_committed,
             (unsigned long long)st.write_batches);
  if (b.oom) {
    buf_free(&b);
    return NULL;
  }
  *len = b.len;
  return b.data;
}
