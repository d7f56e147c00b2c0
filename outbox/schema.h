/*
 * schema.h: the PostgreSQL schema the mirror writes into, and its migrations (docs/mirror.md
 * is the reader's description; this file is the one definition).
 *
 * The schema is `kdeals`, versioned: kdeals.schema_version holds one row per migration applied.
 * Migration N takes the schema from version N - 1 to N; a kdeals that finds a version newer than
 * OB_SCHEMA_VERSION refuses to write (an older binary must not write into a layout it does not
 * know). Migrations run in one transaction under a transaction-level advisory lock
 * (OB_SCHEMA_LOCK), so instances on several hosts that start together migrate once.
 */
#ifndef KD_OUTBOX_SCHEMA_H
#define KD_OUTBOX_SCHEMA_H

#include <stddef.h>

#define OB_SCHEMA_VERSION 1

/* Advisory lock keys: the migrations (one bigint key), and each instance's mirror (this class
 * id and hashtext(instance)), held by the connection that mirrors that instance. */
#define OB_SCHEMA_LOCK   "7235065931203412"
#define OB_INSTANCE_LOCK "1801741677"

/* The SQL of migration V (1..OB_SCHEMA_VERSION): statements separated by ';'. NULL otherwise. */
const char *ob_schema_migration(int v);

/* The statement that makes the schema and its version table when they are missing. */
extern const char ob_schema_bootstrap[];

#endif
