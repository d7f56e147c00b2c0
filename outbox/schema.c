/*
 * schema.c: the mirror's PostgreSQL schema, migration by migration. See schema.h.
 *
 * Version 1. Every row belongs to an instance (the [mirror] instance name), so several
 * instances on several hosts write disjoint rows of the same tables and never conflict.
 *
 *   instances   one row per instance: which store mirrors under that name (store_id), from
 *               which host and folder, its marketplace, and the last change it mirrored
 *   products    one row per record of the store (every judged product, deal or not), keyed by
 *               (instance, domain, asin): `record` is the whole record as `kdeals deals
 *               --format json` writes it (docs/view.md, every field), `revision` the store's,
 *               `seq` the store's change seq as of which the row is true (the upsert's guard:
 *               a row is only ever replaced by one true as of a later or equal seq); the other
 *               columns are generated from `record` for SQL: the state, the verdict, the offer
 *               to buy, the figures, the mark, the times
 *   changes     every change of the store's log once, keyed by (instance, seq); pruned after
 *               [mirror] keep_changes
 *   deals       view: the products in the deal state
 *   reasons     view: each product's verdict reasons, one row per criterion
 *   marks       view: the products the seller marked (bought, ignored)
 *
 * Times are timestamptz, money bigint in the smallest unit of the row's currency (_cents), ratios
 * bigint basis points (_bp), as in the JSON.
 */
#include "outbox/schema.h"

#define GEN_TEXT(col, field) "  " col " text GENERATED ALWAYS AS (record->>'" field "') STORED,\n"
#define GEN_BIGINT(col, field)                                                                     \
    "  " col " bigint GENERATED ALWAYS AS ((record->>'" field "')::bigint) STORED,\n"
#define GEN_BOOL(col, field)                                                                       \
    "  " col " boolean GENERATED ALWAYS AS ((record->>'" field "')::boolean) STORED,\n"
#define GEN_TIME(col, field)                                                                       \
    "  " col " timestamptz GENERATED ALWAYS AS "                                                   \
    "(to_timestamp((record->>'" field "')::double precision / 1000)) STORED,\n"

const char ob_schema_bootstrap[] = "CREATE SCHEMA IF NOT EXISTS kdeals;\n"
                                   "CREATE TABLE IF NOT EXISTS kdeals.schema_version (\n"
                                   "  version integer PRIMARY KEY,\n"
                                   "  applied_at timestamptz NOT NULL DEFAULT now(),\n"
                                   "  applied_by text NOT NULL\n"
                                   ")";

static const char migration_1[] =
    "CREATE TABLE kdeals.instances (\n"
    "  instance text PRIMARY KEY,\n"
    "  store_id text NOT NULL,\n"
    "  host text NOT NULL,\n"
    "  daemon_instance text NOT NULL,\n"
    "  store_path text NOT NULL,\n"
    "  domain integer NOT NULL,\n"
    "  marketplace text NOT NULL,\n"
    "  currency text NOT NULL,\n"
    "  mirrored_seq bigint NOT NULL DEFAULT 0,\n"
    "  synced_at timestamptz,\n"
    "  created_at timestamptz NOT NULL DEFAULT now(),\n"
    "  updated_at timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE TABLE kdeals.products (\n"
    "  instance text NOT NULL REFERENCES kdeals.instances ON DELETE CASCADE,\n"
    "  domain integer NOT NULL,\n"
    "  asin text NOT NULL,\n"
    "  revision bigint NOT NULL,\n"
    "  seq bigint NOT NULL,\n"
    "  record jsonb NOT NULL,\n"
    "  mirrored_at timestamptz NOT NULL DEFAULT now(),\n" GEN_TEXT("state", "state") GEN_TEXT(
        "title", "title") GEN_TEXT("marketplace",
                                   "marketplace") GEN_TEXT("currency",
                                                           "currency") GEN_BIGINT("category_id",
                                                                                  "category_id")
        GEN_TEXT("category_name", "category_name") GEN_TEXT("amazon_url", "amazon_url") GEN_BOOL(
            "verdict_deal", "verdict_deal") GEN_BOOL("verdict_near", "verdict_near")
            GEN_TEXT("reason", "reason") GEN_TEXT("buy_condition", "buy_condition_name") GEN_BIGINT(
                "buy_price_cents",
                "buy_price_cents") GEN_BIGINT("buy_shipping_cents",
                                              "buy_shipping_cents") GEN_BIGINT("buy_total_cents",
                                                                               "buy_total_cents")
                GEN_TEXT("buy_seller_id", "buy_seller_id") GEN_BOOL(
                    "buy_is_fba",
                    "buy_is_fba") GEN_TIME("buy_seen_at",
                                           "buy_seen_ms") GEN_BOOL("amazon_on_listing",
                                                                   "amazon_on_listing")
                    GEN_TEXT("sell_basis", "sell_basis") GEN_BIGINT(
                        "sell_cents",
                        "sell_cents") GEN_BIGINT("landed_cents",
                                                 "landed_cents") GEN_BIGINT("profit_cents",
                                                                            "profit_cents")
                        GEN_BIGINT("roi_bp", "roi_bp") GEN_BIGINT(
                            "margin_bp", "margin_bp") GEN_BIGINT("max_cost_cents", "max_cost_cents")
                            GEN_BIGINT("monthly_profit_cents", "monthly_profit_cents") GEN_BIGINT(
                                "sales_rank", "sales_rank") GEN_BIGINT("drops30", "drops30")
                                GEN_BIGINT("monthly_sold", "monthly_sold") GEN_BIGINT(
                                    "competing_offers",
                                    "competing_offers") GEN_TEXT("mark", "mark")
                                    GEN_TIME("marked_at", "marked_ms") GEN_BIGINT(
                                        "bought_cost_cents",
                                        "bought_cost_cents") GEN_BIGINT("bought_qty", "bought_qty")
                                        GEN_TIME("first_seen_at", "first_seen_ms") GEN_TIME(
                                            "deal_since_at",
                                            "deal_since_ms") GEN_TIME("judged_at", "judged_ms")
                                            GEN_TIME("last_checked_at", "last_checked_ms") GEN_TIME(
                                                "expired_at",
                                                "expired_ms") "  PRIMARY KEY (instance, domain, "
                                                              "asin)\n"
                                                              ");\n"
                                                              "CREATE INDEX products_state_roi ON "
                                                              "kdeals.products (state, roi_bp "
                                                              "DESC);\n"
                                                              "CREATE TABLE kdeals.changes (\n"
                                                              "  instance text NOT NULL REFERENCES "
                                                              "kdeals.instances ON DELETE "
                                                              "CASCADE,\n"
                                                              "  seq bigint NOT NULL,\n"
                                                              "  domain integer NOT NULL,\n"
                                                              "  asin text NOT NULL,\n"
                                                              "  revision bigint NOT NULL,\n"
                                                              "  event text NOT NULL,\n"
                                                              "  state text NOT NULL,\n"
                                                              "  prev_state text NOT NULL,\n"
                                                              "  at timestamptz NOT NULL,\n"
                                                              "  mirrored_at timestamptz NOT NULL "
                                                              "DEFAULT now(),\n"
                                                              "  PRIMARY KEY (instance, seq)\n"
                                                              ");\n"
                                                              "CREATE INDEX changes_at ON "
                                                              "kdeals.changes (at);\n"
                                                              "CREATE INDEX changes_product ON "
                                                              "kdeals.changes (instance, domain, "
                                                              "asin, seq);\n"
                                                              "CREATE VIEW kdeals.deals AS SELECT "
                                                              "* FROM kdeals.products WHERE state "
                                                              "= 'deal';\n"
                                                              "CREATE VIEW kdeals.reasons AS\n"
                                                              "  SELECT p.instance, p.domain, "
                                                              "p.asin, r.position::integer AS "
                                                              "position,\n"
                                                              "         r.reason->>'criterion' AS "
                                                              "criterion, r.reason->>'state' AS "
                                                              "state,\n"
                                                              "         "
                                                              "(r.reason->>'fails')::boolean AS "
                                                              "fails, r.reason->>'unit' AS unit,\n"
                                                              "         "
                                                              "(r.reason->>'value')::bigint AS "
                                                              "value, "
                                                              "(r.reason->>'threshold')::bigint AS "
                                                              "threshold,\n"
                                                              "         "
                                                              "(r.reason->>'margin')::bigint AS "
                                                              "margin, r.reason->>'text' AS text\n"
                                                              "    FROM kdeals.products p\n"
                                                              "    CROSS JOIN LATERAL "
                                                              "jsonb_array_elements(CASE "
                                                              "jsonb_typeof(p.record->'reasons')\n"
                                                              "         WHEN 'array' THEN "
                                                              "p.record->'reasons' ELSE "
                                                              "'[]'::jsonb END)\n"
                                                              "         WITH ORDINALITY AS "
                                                              "r(reason, position);\n"
                                                              "CREATE VIEW kdeals.marks AS\n"
                                                              "  SELECT instance, domain, asin, "
                                                              "title, mark, marked_at, "
                                                              "bought_cost_cents, bought_qty,\n"
                                                              "         currency FROM "
                                                              "kdeals.products WHERE mark <> "
                                                              "'none'";

const char *ob_schema_migration(int v)
{
    switch (v) {
    case 1:
        return migration_1;
    default:
        return 0;
    }
}
