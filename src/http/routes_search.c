/*
 * routes_search.c — placeholder until the routes land.
 */
#include "http/http.h"

const http_route http_routes_search[] = {
    {NULL, NULL, NULL, NULL},
};
