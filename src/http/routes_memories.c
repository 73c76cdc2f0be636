/*
 * routes_memories.c — placeholder until the routes land.
 */
#include "http/http.h"

const http_route http_routes_memories[] = {
    {NULL, NULL, NULL, NULL},
};
