// The usage tables, the catalogue tables and the budgets' tables as both backends see them; kept by hand in step with `migrations/`.
diesel::table! {
    usage_logs (id) {
        id -> BigInt,
        timestamp -> Timestamp,
        request_id -> Text,
        user_email_hash -> Nullable<Text>,
        specialist_id -> Text,
        specialist_name -> Text,
        provider -> Text,
        model -> Text,
        input_tokens -> BigInt,
        output_tokens -> BigInt,
        tokens_estimated -> Bool,
        estimated_cost_usd -> Double,
        pricing_known -> Bool,
        latency_ms -> Double,
        ttft_ms -> Nullable<Double>,
        success -> Bool,
        error_code -> Nullable<Text>,
        streamed -> Bool,
        client_request_id -> Nullable<Text>,
        cached_input_tokens -> BigInt,
        cache_write_tokens -> BigInt,
        reasoning_tokens -> BigInt,
        end_user -> Nullable<Text>,
        attempts -> SmallInt,
        api_key -> Nullable<Text>,
        door -> Text,
    }
}

diesel::table! {
    usage_attempts (request_id, attempt) {
        request_id -> Text,
        attempt -> SmallInt,
        provider -> Text,
        model -> Text,
        base_url -> Nullable<Text>,
        error_code -> Nullable<Text>,
        input_tokens -> BigInt,
        output_tokens -> BigInt,
        cached_input_tokens -> BigInt,
        cache_write_tokens -> BigInt,
        reasoning_tokens -> BigInt,
        tokens_estimated -> Bool,
        estimated_cost_usd -> Double,
        pricing_known -> Bool,
        latency_ms -> Double,
        continuation -> Bool,
    }
}

diesel::table! {
    specialists (id) {
        id -> Text,
        id_key -> Text,
        name_key -> Text,
        version -> BigInt,
        spec -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    specialist_versions (seq) {
        seq -> BigInt,
        id -> Text,
        version -> BigInt,
        spec -> Text,
        deleted -> Bool,
        changed_at -> Timestamp,
    }
}

diesel::table! {
    catalogue_revision (id) {
        id -> Integer,
        revision -> BigInt,
        seeded -> Bool,
    }
}

diesel::table! {
    budgets (id) {
        id -> Text,
        definition -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
    }
}

diesel::table! {
    budget_revision (id) {
        id -> Integer,
        revision -> BigInt,
    }
}

diesel::table! {
    usage_hours (hour) {
        hour -> Timestamp,
        written -> BigInt,
        sealed -> Nullable<BigInt>,
    }
}

diesel::table! {
    usage_rollup (dimension, hour, key) {
        dimension -> Text,
        hour -> Timestamp,
        key -> Text,
        requests -> BigInt,
        successes -> BigInt,
        input_tokens -> BigInt,
        output_tokens -> BigInt,
        cost_usd -> Double,
        latency_sum_ms -> Double,
        latency_min_ms -> Double,
        latency_max_ms -> Double,
        latency_histogram -> Binary,
    }
}

diesel::allow_tables_to_appear_in_same_query!(usage_hours, usage_rollup);
