/* A small key-value service over SQLite's amalgamation, for measuring
 * pea-analyze on a large whole-program input (measure_sqlite.sh). Its
 * routes sit in a table of { name, SQL, prepared statement }; each route
 * prepares its statement on first use (`if (!r->stmt)`), and the statement
 * lives inside SQLite. */
#include <stdio.h>
#include <string.h>

#include "sqlite3.h"

struct route {
    const char* name;
    const char* sql;
    sqlite3_stmt* stmt;
};

static struct route routes[] = {
    {"get", "select v from kv where k = ?1", NULL},
    {"put", "insert or replace into kv values (?1, ?2)", NULL},
    {"del", "delete from kv where k = ?1", NULL},
    {"count", "select count(*) from kv where ?1 = ?1", NULL},
};

static sqlite3* db;

static struct route* find_route(const char* word) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(routes[i].name, word) == 0)
            return &routes[i];
    return NULL;
}

static int prepare(struct route* r) {
    if (!r->stmt && sqlite3_prepare_v2(db, r->sql, -1, &r->stmt, NULL) != SQLITE_OK)
        return -1;
    return 0;
}

int main(void) {
    char line[512];
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_exec(db, "create table kv (k text primary key, v text)", NULL, NULL, NULL) !=
            SQLITE_OK)
        return 1;
    while (fgets(line, sizeof line, stdin)) {
        char* word = strtok(line, " \n");
        char* key = strtok(NULL, " \n");
        char* value = strtok(NULL, "\n");
        struct route* r = word ? find_route(word) : NULL;
        if (!r || prepare(r) != 0) {
            puts("?");
            continue;
        }
        sqlite3_reset(r->stmt);
        sqlite3_bind_text(r->stmt, 1, key ? key : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(r->stmt, 2, value ? value : "", -1, SQLITE_TRANSIENT);
        if (sqlite3_step(r->stmt) == SQLITE_ROW)
            puts((const char*)sqlite3_column_text(r->stmt, 0));
        else
            puts("ok");
    }
    sqlite3_close(db);
    return 0;
}
