/*
 * routes_mem0.c — placeholder until the routes land.
 */
#include "http/http.h"

const http_route http_routes_mem0[] = {
    {NULL, NULL, NULL, NULL},
};
