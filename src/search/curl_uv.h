/*
 * curl_uv.h — libcurl's multi interface driven by a libuv loop.
 *
 * One curl_uv owns one CURLM handle. libcurl tells it which sockets to
 * watch (each gets a uv_poll_t) and when it next wants to be called (one
 * uv_timer_t); the loop calls curl_multi_socket_action() back on those
 * events, so transfers progress on the loop thread with no thread of their
 * own and no blocking call. A finished transfer is reported to the callback
 * given with its easy handle, from the loop, never inside curl_uv_add().
 *
 * Shared by every HTTP client in engram (the embedder, the chat completion
 * client): they build easy handles, hand them here, and read the result in
 * their done callback. Everything here runs on the loop thread only.
 */
#ifndef ENGRAM_CURL_UV_H
#define ENGRAM_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

typedef struct curl_uv curl_uv;

/* A transfer finished: result is CURLE_OK (the response status is then in
 * CURLINFO_RESPONSE_CODE), a transfer error, or CURLE_ABORTED_BY_CALLBACK
 * when curl_uv_close() stopped it. easy is no longer in the multi handle
 * and belongs to the caller again (it may curl_easy_cleanup() it here). */
typedef void (*curl_uv_done_fn)(CURL *easy, CURLcode result, void *data);

/* Creates a driver on loop; NULL when out of memory. */
curl_uv *curl_uv_new(uv_loop_t *loop);

/* Starts easy (fully set up by the caller, who keeps owning it). curl_uv
 * uses the easy handle's CURLOPT_PRIVATE and sets CURLOPT_NOSIGNAL; the
 * caller must not touch either. done runs exactly once unless
 * curl_uv_remove() comes first. Returns 0, ENGRAM_ENOMEM, ENGRAM_ECLOSED
 * (the driver is closing) or ENGRAM_EINVAL (curl refused the handle). */
int curl_uv_add(curl_uv *cu, CURL *easy, curl_uv_done_fn done, void *data);

/* Stops easy if it is still running; its done callback will not run.
 * Safe from any callback, including another transfer's done. Returns 1
 * when easy was running, 0 when it was not (already finished or never
 * added). */
int curl_uv_remove(curl_uv *cu, CURL *easy);

/* Transfers added and not yet finished or removed. */
unsigned curl_uv_running(const curl_uv *cu);

/* Closes the driver: transfers still running end with
 * CURLE_ABORTED_BY_CALLBACK (their done callbacks run from the loop), the
 * multi handle is cleaned up, every poll handle and the timer are closed,
 * then cb(data) runs and cu is freed. Never calls back inside this call;
 * safe from a done callback. cb may be NULL. */
void curl_uv_close(curl_uv *cu, void (*cb)(void *data), void *data);

#endif
