//! A scripted "model" for client compatibility tests: it answers each request from what the
//! request itself asks, the way a cooperative real model would, so real SDKs (OpenAI's,
//! LangChain, instructor) can run their whole flows against a fake.
//!
//! For each request on its wire:
//! - tools offered (and not turned off) while the conversation does not end with a tool
//!   result: it calls the forced tool, or else the first one, with arguments that are a
//!   minimal valid instance of the tool's JSON Schema ([`schema_instance`]);
//! - the conversation ends with a tool result: it answers text quoting that result;
//! - a JSON answer is asked for (OpenAI `response_format` `json_schema` / `json_object`,
//!   Gemini `responseJsonSchema` / `responseSchema` / `responseMimeType`; Anthropic's
//!   structured output is a forced tool, covered above): it answers a minimal valid instance;
//! - otherwise it echoes the last user message;
//! - and on Anthropic's wire with `thinking` on, it thinks first: a `thinking` block
//!   ("Thinking about: " and the last user message) signed [`THINKING_SIGNATURE`].

use serde_json::{Map, Value, json};

use crate::{FakeUpstream, Reply, Wire};

/// The id the fake gives the tool call it makes (Gemini's wire has no ids).
pub const TOOL_CALL_ID: &str = "call_fake_0";

/// Starts a fake of `wire` on `bind` (`127.0.0.1:0` for a free port) answering as the scripted
/// model, on `workers` threads, recording nothing. Must be called inside a Tokio runtime.
pub fn start(bind: &str, wire: Wire, workers: usize) -> std::io::Result<FakeUpstream> {
    FakeUpstream::start_responding(
        bind,
        wire,
        Reply::text("unused: the scripted model answers"),
        false,
        workers,
        Some(reply_to),
    )
}

/// The reply the scripted model gives to `body`, a request on `wire`.
pub fn reply_to(wire: Wire, body: &Value) -> Reply {
    let request = match wire {
        Wire::OpenAi => openai(body),
        Wire::Anthropic => anthropic(body),
        Wire::Google => google(body),
    };
    let reply = if let Some(result) = &request.last_tool_result {
        Reply::text(format!("The tool returned: {result}"))
    } else if let Some((name, schema)) = &request.tool_to_call {
        let arguments = schema_instance(schema).to_string();
        Reply::text("").tool_calls(&[(TOOL_CALL_ID, name, &arguments)])
    } else {
        match &request.json_answer {
            Some(schema) => Reply::text(schema_instance(schema).to_string()),
            None => Reply::text(format!("You said: {}", request.last_user_text)),
        }
    };
    // Asked to think (Anthropic's `thinking` on), it thinks first, with a signature.
    let thinks = wire == Wire::Anthropic
        && matches!(
            body["thinking"]["type"].as_str(),
            Some("enabled" | "adaptive")
        );
    if thinks {
        reply.thinking(
            format!("Thinking about: {}", request.last_user_text),
            THINKING_SIGNATURE,
        )
    } else {
        reply
    }
}

/// The signature of the scripted model's thinking blocks.
pub const THINKING_SIGNATURE: &str = "fake-thinking-signature";

/// What the scripted model reads from a request, whatever its wire.
#[derive(Debug, Default)]
struct Conversation {
    /// The tool to call (name, parameters schema), when tools are offered and allowed.
    tool_to_call: Option<(String, Value)>,
    /// The text of the tool result the conversation ends with.
    last_tool_result: Option<String>,
    /// The schema of the JSON answer asked for (`{}` when any JSON object will do).
    json_answer: Option<Value>,
    /// The text of the last user message.
    last_user_text: String,
}

/// The tool to call among `tools` (`(name, schema)` each): the `forced` one when named, else
/// the first.
fn pick(tools: Vec<(String, Value)>, forced: Option<&str>) -> Option<(String, Value)> {
    match forced {
        Some(name) => tools.into_iter().find(|(n, _)| n == name),
        None => tools.into_iter().next(),
    }
}

/// The text of a content that is a string or a list of parts with `text`.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn openai(body: &Value) -> Conversation {
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let last = messages.last();
    let last_tool_result = last
        .filter(|m| m["role"] == "tool")
        .map(|m| text_of(&m["content"]));
    let tools: Vec<(String, Value)> = body["tools"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|t| {
            let function = &t["function"];
            Some((
                function["name"].as_str()?.to_owned(),
                function["parameters"].clone(),
            ))
        })
        .collect();
    let choice = &body["tool_choice"];
    let tool_to_call = if choice == "none" {
        None
    } else {
        pick(tools, choice["function"]["name"].as_str())
    };
    let format = &body["response_format"];
    let json_answer = match format["type"].as_str() {
        Some("json_schema") => Some(format["json_schema"]["schema"].clone()),
        Some("json_object") => Some(json!({"type": "object"})),
        _ => None,
    };
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    Conversation {
        tool_to_call,
        last_tool_result,
        json_answer,
        last_user_text,
    }
}

fn anthropic(body: &Value) -> Conversation {
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let last_tool_result = messages
        .last()
        .filter(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_array())
        .and_then(|blocks| blocks.iter().rev().find(|b| b["type"] == "tool_result"))
        .map(|b| text_of(&b["content"]));
    let tools: Vec<(String, Value)> = body["tools"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|t| Some((t["name"].as_str()?.to_owned(), t["input_schema"].clone())))
        .collect();
    let choice = &body["tool_choice"];
    let tool_to_call = if choice["type"] == "none" {
        None
    } else {
        pick(tools, choice["name"].as_str())
    };
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    Conversation {
        tool_to_call,
        last_tool_result,
        json_answer: None,
        last_user_text,
    }
}

fn google(body: &Value) -> Conversation {
    let contents = body["contents"].as_array().map_or(&[][..], Vec::as_slice);
    let last_tool_result = contents
        .last()
        .and_then(|c| c["parts"].as_array())
        .and_then(|parts| {
            parts
                .iter()
                .rev()
                .find(|p| p.get("functionResponse").is_some())
        })
        .map(|p| {
            let response = &p["functionResponse"]["response"];
            // The provider wraps a text result as {"result": text}; quote the text itself.
            response["result"]
                .as_str()
                .map_or_else(|| response.to_string(), str::to_owned)
        });
    let tools: Vec<(String, Value)> = body["tools"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|t| t["functionDeclarations"].as_array())
        .flatten()
        .filter_map(|f| {
            let schema = f
                .get("parametersJsonSchema")
                .or_else(|| f.get("parameters"))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            Some((f["name"].as_str()?.to_owned(), schema))
        })
        .collect();
    let config = &body["toolConfig"]["functionCallingConfig"];
    let tool_to_call = if config["mode"] == "NONE" {
        None
    } else {
        pick(tools, config["allowedFunctionNames"][0].as_str())
    };
    let generation = &body["generationConfig"];
    let json_answer = generation
        .get("responseJsonSchema")
        .or_else(|| generation.get("responseSchema"))
        .cloned()
        .or_else(|| {
            (generation["responseMimeType"] == "application/json")
                .then(|| json!({"type": "object"}))
        });
    let last_user_text = contents
        .iter()
        .rev()
        .find(|c| c["role"] == "user" && c["parts"][0].get("text").is_some())
        .map(|c| text_of(&c["parts"]))
        .unwrap_or_default();
    Conversation {
        tool_to_call,
        last_tool_result,
        json_answer,
        last_user_text,
    }
}

/// A minimal valid instance of a JSON Schema: required properties only, strings `"x"` (an
/// enum's or `const`'s first value when given), numbers `1`, booleans `true`, arrays of one
/// item (or `minItems`), nested objects filled the same way. `$ref`s into `$defs` /
/// `definitions` are followed; of `anyOf` / `oneOf` the first non-null branch is taken, and
/// `allOf` branches are merged.
pub fn schema_instance(schema: &Value) -> Value {
    instance(schema, schema, 0)
}

/// Deep enough for any real tool schema, shallow enough that a recursive one ends.
const MAX_DEPTH: usize = 32;

fn instance(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let Some(object) = schema.as_object() else {
        // `true` or `{}`-like: anything goes.
        return json!("x");
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return instance(&resolve(reference, root), root, depth + 1);
    }
    if let Some(value) = object.get("const") {
        return value.clone();
    }
    if let Some(first) = object
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(branches) = object
        .get("anyOf")
        .or_else(|| object.get("oneOf"))
        .and_then(Value::as_array)
    {
        let branch = branches
            .iter()
            .find(|b| b["type"] != "null")
            .or_else(|| branches.first());
        return branch.map_or(Value::Null, |b| instance(b, root, depth + 1));
    }
    if let Some(branches) = object.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for branch in branches {
            if let Value::Object(fields) = instance(branch, root, depth + 1) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    let kind = match object.get("type") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        Some(Value::String(kind)) => kind.as_str(),
        _ if object.contains_key("properties") => "object",
        _ if object.contains_key("items") => "array",
        _ => "string",
    };
    match kind {
        "object" => {
            let properties = object.get("properties").and_then(Value::as_object);
            let required = object
                .get("required")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let mut fields = Map::new();
            for name in required.iter().filter_map(Value::as_str) {
                let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                fields.insert(name.to_owned(), instance(property, root, depth + 1));
            }
            Value::Object(fields)
        }
        "array" => {
            let count = object
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 16);
            let items = object.get("items").unwrap_or(&Value::Null);
            let item = instance(items, root, depth + 1);
            Value::Array((0..count).map(|_| item.clone()).collect())
        }
        "integer" => json!(
            object
                .get("minimum")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .max(1)
        ),
        "number" => json!(
            object
                .get("minimum")
                .and_then(Value::as_f64)
                .unwrap_or(1.0)
                .max(1.0)
        ),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => {
            let length = object.get("minLength").and_then(Value::as_u64).unwrap_or(1);
            json!("x".repeat(usize::try_from(length.clamp(1, 64)).unwrap_or(1)))
        }
    }
}

/// The schema a local `$ref` (`#/$defs/Name`, `#/definitions/Name`, `#`) points at; `{}` for
/// anything else.
fn resolve(reference: &str, root: &Value) -> Value {
    let Some(pointer) = reference.strip_prefix('#') else {
        return json!({});
    };
    root.pointer(pointer).cloned().unwrap_or_else(|| json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{FakeThinking, ReplyKind};

    fn thinking_of(reply: &Reply) -> Vec<FakeThinking> {
        match &reply.kind {
            ReplyKind::Answer(answer) => answer.thinking.clone(),
            other => panic!("an answer: {other:?}"),
        }
    }

    #[test]
    fn asked_to_think_on_anthropics_wire_it_thinks_first() {
        let mut body = json!({"messages": [{"role": "user", "content": "Why?"}],
                              "thinking": {"type": "enabled", "budget_tokens": 1024}});
        assert_eq!(
            thinking_of(&reply_to(Wire::Anthropic, &body)),
            [FakeThinking::Thinking {
                text: "Thinking about: Why?".into(),
                signature: THINKING_SIGNATURE.into(),
            }]
        );
        body["thinking"] = json!({"type": "disabled"});
        assert!(thinking_of(&reply_to(Wire::Anthropic, &body)).is_empty());
        body["thinking"] = json!({"type": "enabled"});
        assert!(thinking_of(&reply_to(Wire::OpenAi, &body)).is_empty());
    }

    #[test]
    fn an_object_gets_its_required_properties_only() {
        let schema = json!({"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"},
            "metric": {"type": "boolean"}, "ratio": {"type": "number"},
            "note": {"type": "string"}},
            "required": ["city", "days", "metric", "ratio"]});
        assert_eq!(
            schema_instance(&schema),
            json!({"city": "x", "days": 1, "metric": true, "ratio": 1.0})
        );
    }

    #[test]
    fn enums_consts_arrays_and_nested_objects() {
        let schema = json!({"type": "object", "required": ["unit", "kind", "tags", "place"],
            "properties": {
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "kind": {"const": "weather"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "place": {"type": "object", "required": ["lat"],
                          "properties": {"lat": {"type": "number"}}}}});
        assert_eq!(
            schema_instance(&schema),
            json!({"unit": "celsius", "kind": "weather", "tags": ["x"], "place": {"lat": 1.0}})
        );
    }

    #[test]
    fn pydantic_refs_optionals_and_min_items_are_honoured() {
        // What Pydantic writes for a model with a nested model and an Optional field.
        let schema = json!({
            "$defs": {"Address": {"type": "object", "required": ["street"],
                                  "properties": {"street": {"type": "string", "minLength": 3}}}},
            "type": "object", "required": ["address", "nickname", "scores"],
            "properties": {
                "address": {"$ref": "#/$defs/Address"},
                "nickname": {"anyOf": [{"type": "null"}, {"type": "string"}]},
                "scores": {"type": "array", "minItems": 2, "items": {"type": ["integer", "null"]}}}});
        assert_eq!(
            schema_instance(&schema),
            json!({"address": {"street": "xxx"}, "nickname": "x", "scores": [1, 1]})
        );
    }

    #[test]
    fn a_recursive_schema_ends() {
        let schema = json!({"$ref": "#", "type": "object"});
        assert_eq!(schema_instance(&schema), Value::Null);
    }

    #[test]
    fn openai_calls_the_forced_tool_then_quotes_its_result() {
        let tools = json!([
            {"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "weather", "parameters": {
                "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}]);
        let call = openai(
            &json!({"messages": [{"role": "user", "content": "hi"}], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "weather"}}}),
        );
        assert_eq!(
            call.tool_to_call.map(|(name, _)| name),
            Some("weather".to_owned())
        );
        let answered = openai(&json!({"tools": tools, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": "sunny"}]}));
        assert_eq!(answered.last_tool_result.as_deref(), Some("sunny"));
    }

    #[test]
    fn each_wire_reads_its_own_json_answer_request() {
        let schema =
            json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}});
        let openai = openai(&json!({"messages": [], "response_format":
            {"type": "json_schema", "json_schema": {"name": "A", "schema": schema}}}));
        assert_eq!(openai.json_answer.as_ref(), Some(&schema));
        let google = google(&json!({"contents": [], "generationConfig":
            {"responseMimeType": "application/json", "responseJsonSchema": schema}}));
        assert_eq!(google.json_answer.as_ref(), Some(&schema));
        let anthropic = anthropic(&json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "42"}]}]}]}));
        assert_eq!(anthropic.last_tool_result.as_deref(), Some("42"));
    }
}
