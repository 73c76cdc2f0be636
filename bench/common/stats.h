/*
 * stats.h — measuring helpers shared by the benchmarks: a monotonic clock,
 * percentiles of latency samples, medians of repeated runs, peak RSS.
 */
#ifndef BENCH_STATS_H
#define BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t stats_now_ns(void);
/* The 1-minute load average, to print beside timings taken on a machine
 * that may be shared; -1 when unknown. */
double stats_loadavg(void);

/* CPU time of the whole process (every thread), in nanoseconds. */
uint64_t stats_cpu_ns(void);

/* Sorts samples ascending, in place. */
void stats_sort_u64(uint64_t *v, size_t n);

/* The p-th percentile (p in [0, 100]) of sorted samples, interpolating
 * linearly between closest ranks; 0 when n is 0. */
double stats_percentile(const uint64_t *sorted, size_t n, double p);

/* The median of n doubles (v is reordered); 0 when n is 0. */
double stats_median(double *v, size_t n);

/* Peak resident set size of this process so far, in KiB. */
long stats_peak_rss_kb(void);

#endif
