//! Reads the SAM template so that the local cache table is created from the same
//! definition that is deployed, rather than from a second copy that could drift.

use std::path::Path;

use serde_json::{Map, Value, json};
use serde_yaml::value::TaggedValue;

use crate::Result;

pub const CACHE_TABLE_LOGICAL_ID: &str = "CacheTable";
/// The quota leases of admission.
pub const BUDGET_TABLE_LOGICAL_ID: &str = "BudgetTable";
pub const USAGE_TABLE_LOGICAL_ID: &str = "UsageTable";
/// The batch pipeline's pending requests, jobs and results.
pub const BATCH_TABLE_LOGICAL_ID: &str = "BatchTable";

/// Parses a CloudFormation YAML document into JSON, turning short-form intrinsics
/// (`!Ref X`, `!GetAtt A.B`, `!Sub ...`) into their long form, as CloudFormation does.
pub fn parse_template(text: &str) -> Result<Value> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text)?;
    yaml_to_json(yaml)
}

pub fn load_template(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    parse_template(&text).map_err(|e| format!("could not parse {}: {e}", path.display()).into())
}

fn yaml_to_json(value: serde_yaml::Value) -> Result<Value> {
    Ok(match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => number_to_json(&n)?,
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect::<Result<Vec<_>>>()?)
        }
        serde_yaml::Value::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    serde_yaml::Value::String(s) => s,
                    other => serde_yaml::to_string(&other)?.trim().to_string(),
                };
                object.insert(key, yaml_to_json(value)?);
            }
            Value::Object(object)
        }
        serde_yaml::Value::Tagged(tagged) => intrinsic_to_json(*tagged)?,
    })
}

fn number_to_json(n: &serde_yaml::Number) -> Result<Value> {
    if let Some(i) = n.as_i64() {
        return Ok(json!(i));
    }
    if let Some(u) = n.as_u64() {
        return Ok(json!(u));
    }
    n.as_f64()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("number {n} has no JSON representation").into())
}

fn intrinsic_to_json(tagged: TaggedValue) -> Result<Value> {
    let tag = tagged.tag.to_string();
    let name = tag.trim_start_matches('!');
    let argument = yaml_to_json(tagged.value)?;
    let (key, argument) = match name {
        "Ref" | "Condition" => (name.to_string(), argument),
        // The short form takes "Resource.Attribute"; the long form takes a two-item list.
        "GetAtt" => match argument {
            Value::String(s) => {
                let (resource, attribute) = s.split_once('.').ok_or_else(|| format!("!GetAtt {s} has no attribute"))?;
                ("Fn::GetAtt".to_string(), json!([resource, attribute]))
            }
            other => ("Fn::GetAtt".to_string(), other),
        },
        _ => (format!("Fn::{name}"), argument),
    };
    Ok(json!({ key: argument }))
}

/// `Resources.CacheTable.Properties` of a parsed template.
pub fn cache_table_properties(template: &Value) -> Result<&Map<String, Value>> {
    table_properties(template, CACHE_TABLE_LOGICAL_ID)
}

/// The properties of the `AWS::DynamoDB::Table` named `logical_id`.
pub fn table_properties<'a>(template: &'a Value, logical_id: &str) -> Result<&'a Map<String, Value>> {
    template
        .pointer(&format!("/Resources/{logical_id}/Properties"))
        .and_then(Value::as_object)
        .ok_or_else(|| format!("template has no Resources.{logical_id}.Properties").into())
}

/// Builds a DynamoDB `CreateTable` request from `AWS::DynamoDB::Table` properties.
/// CloudFormation and the API agree on most shapes; SSE is the exception
/// (`SSEEnabled` there, `Enabled` here).
pub fn create_table_request(properties: &Map<String, Value>, table_name: &str) -> Result<Value> {
    let mut request = Map::new();
    request.insert("TableName".into(), json!(table_name));
    for key in ["KeySchema", "AttributeDefinitions"] {
        let value = properties.get(key).ok_or_else(|| format!("{CACHE_TABLE_LOGICAL_ID} has no {key}"))?;
        request.insert(key.into(), literal(key, value)?.clone());
    }
    let billing_mode = match properties.get("BillingMode") {
        Some(value) => literal("BillingMode", value)?.as_str().ok_or("BillingMode is not a string")?.to_string(),
        None => "PROVISIONED".to_string(),
    };
    if billing_mode == "PROVISIONED" {
        let throughput =
            properties.get("ProvisionedThroughput").ok_or("BillingMode PROVISIONED needs ProvisionedThroughput")?;
        request.insert("ProvisionedThroughput".into(), literal("ProvisionedThroughput", throughput)?.clone());
    }
    request.insert("BillingMode".into(), json!(billing_mode));
    if let Some(indexes) = properties.get("GlobalSecondaryIndexes") {
        request.insert("GlobalSecondaryIndexes".into(), global_secondary_indexes(indexes, &billing_mode)?);
    }
    if let Some(sse) = properties.get("SSESpecification") {
        request.insert("SSESpecification".into(), sse_specification(sse)?);
    }
    Ok(Value::Object(request))
}

/// CloudFormation's index shape is the API's; on a provisioned table each index needs its
/// own throughput, as the API does.
fn global_secondary_indexes(indexes: &Value, billing_mode: &str) -> Result<Value> {
    let indexes =
        literal("GlobalSecondaryIndexes", indexes)?.as_array().ok_or("GlobalSecondaryIndexes is not a list")?;
    for index in indexes {
        let index = index.as_object().ok_or("a GlobalSecondaryIndexes entry is not a mapping")?;
        let name = index.get("IndexName").and_then(Value::as_str).ok_or("a global secondary index has no IndexName")?;
        for key in ["KeySchema", "Projection"] {
            if !index.contains_key(key) {
                return Err(format!("global secondary index {name} has no {key}").into());
            }
        }
        if billing_mode == "PROVISIONED" && !index.contains_key("ProvisionedThroughput") {
            return Err(format!("global secondary index {name} needs ProvisionedThroughput").into());
        }
    }
    Ok(Value::Array(indexes.clone()))
}

fn sse_specification(sse: &Value) -> Result<Value> {
    let sse = literal("SSESpecification", sse)?.as_object().ok_or("SSESpecification is not a mapping")?;
    let mut api = Map::new();
    if let Some(enabled) = sse.get("SSEEnabled") {
        api.insert("Enabled".into(), json!(as_bool("SSEEnabled", enabled)?));
    }
    for key in ["SSEType", "KMSMasterKeyId"] {
        if let Some(value) = sse.get(key) {
            api.insert(key.into(), literal(key, value)?.clone());
        }
    }
    Ok(Value::Object(api))
}

/// The `UpdateTimeToLive` request, if the table declares a TTL attribute.
pub fn update_ttl_request(properties: &Map<String, Value>, table_name: &str) -> Result<Option<Value>> {
    let Some(spec) = properties.get("TimeToLiveSpecification") else {
        return Ok(None);
    };
    let spec =
        literal("TimeToLiveSpecification", spec)?.as_object().ok_or("TimeToLiveSpecification is not a mapping")?;
    let enabled = as_bool("Enabled", spec.get("Enabled").unwrap_or(&Value::Bool(false)))?;
    if !enabled {
        return Ok(None);
    }
    let attribute =
        spec.get("AttributeName").and_then(Value::as_str).ok_or("TimeToLiveSpecification has no AttributeName")?;
    Ok(Some(json!({
        "TableName": table_name,
        "TimeToLiveSpecification": {"AttributeName": attribute, "Enabled": true},
    })))
}

/// Rejects intrinsic functions: the local table is created without CloudFormation, so
/// nothing could resolve them.
fn literal<'a>(name: &str, value: &'a Value) -> Result<&'a Value> {
    if contains_intrinsic(value) {
        return Err(format!(
            "{CACHE_TABLE_LOGICAL_ID}.{name} uses an intrinsic function, which the local stack cannot resolve"
        )
        .into());
    }
    Ok(value)
}

fn contains_intrinsic(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            let single_intrinsic =
                map.len() == 1 && map.keys().all(|k| k == "Ref" || k == "Condition" || k.starts_with("Fn::"));
            single_intrinsic || map.values().any(contains_intrinsic)
        }
        Value::Array(items) => items.iter().any(contains_intrinsic),
        _ => false,
    }
}

/// CloudFormation accepts booleans and the strings "true"/"false" alike.
fn as_bool(name: &str, value: &Value) -> Result<bool> {
    match literal(name, value)? {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(format!("{name} is not a boolean: {other}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Transform: AWS::Serverless-2016-10-31
Conditions:
  UseIam: !Equals [!Ref AuthMode, IAM]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          TABLE: !Ref CacheTable
          ARN: !GetAtt CacheTable.Arn
          URL: !Sub https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/
          PART: !Select [1, !Split [".", !Ref ModelId]]
  CacheTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - AttributeName: pk
          AttributeType: S
      KeySchema:
        - AttributeName: pk
          KeyType: HASH
      TimeToLiveSpecification:
        AttributeName: expiresAt
        Enabled: true
      SSESpecification:
        SSEEnabled: true
"#;

    #[test]
    fn short_form_intrinsics_become_long_form() {
        let template = parse_template(TEMPLATE).unwrap();
        let vars = template.pointer("/Resources/Fn/Properties/Environment/Variables").unwrap();
        assert_eq!(vars["TABLE"], json!({"Ref": "CacheTable"}));
        assert_eq!(vars["ARN"], json!({"Fn::GetAtt": ["CacheTable", "Arn"]}));
        assert_eq!(vars["URL"], json!({"Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"}));
        assert_eq!(vars["PART"], json!({"Fn::Select": [1, {"Fn::Split": [".", {"Ref": "ModelId"}]}]}));
        assert_eq!(
            template.pointer("/Conditions/UseIam").unwrap(),
            &json!({"Fn::Equals": [{"Ref": "AuthMode"}, "IAM"]})
        );
    }

    #[test]
    fn create_table_request_follows_the_template() {
        let template = parse_template(TEMPLATE).unwrap();
        let properties = cache_table_properties(&template).unwrap();
        let request = create_table_request(properties, "local-table").unwrap();
        assert_eq!(
            request,
            json!({
                "TableName": "local-table",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "SSESpecification": {"Enabled": true},
            })
        );
        let ttl = update_ttl_request(properties, "local-table").unwrap();
        assert_eq!(
            ttl,
            Some(json!({
                "TableName": "local-table",
                "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": true},
            }))
        );
    }

    #[test]
    fn provisioned_tables_need_throughput_and_intrinsics_are_refused() {
        let properties = json!({
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        });
        let properties = properties.as_object().unwrap();
        assert!(create_table_request(properties, "t").is_err());

        let with_ref = json!({
            "KeySchema": {"Ref": "KeySchemaParam"},
            "AttributeDefinitions": [],
            "BillingMode": "PAY_PER_REQUEST",
        });
        let error = create_table_request(with_ref.as_object().unwrap(), "t").unwrap_err();
        assert!(error.to_string().contains("intrinsic"));
    }

    #[test]
    fn global_secondary_indexes_pass_through_and_need_their_keys() {
        let properties = json!({
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "GlobalSecondaryIndexes": [{
                "IndexName": "by-x",
                "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
        });
        let request = create_table_request(properties.as_object().unwrap(), "t").unwrap();
        assert_eq!(request["GlobalSecondaryIndexes"], properties["GlobalSecondaryIndexes"]);

        let mut without_projection = properties.clone();
        without_projection["GlobalSecondaryIndexes"][0].as_object_mut().unwrap().remove("Projection");
        let error = create_table_request(without_projection.as_object().unwrap(), "t").unwrap_err();
        assert!(error.to_string().contains("by-x has no Projection"), "{error}");
    }

    #[test]
    fn repository_template_defines_the_batch_table_and_its_indexes() {
        let template = load_template(&crate::paths::repo_root().join("template.yaml")).unwrap();
        let properties = table_properties(&template, BATCH_TABLE_LOGICAL_ID).unwrap();
        let request = create_table_request(properties, "t").unwrap();
        let keys: Vec<&str> =
            request["KeySchema"].as_array().unwrap().iter().map(|k| k["AttributeName"].as_str().unwrap()).collect();
        assert_eq!(keys, ["pk", "sk"]);
        let index = |name: &str| {
            request["GlobalSecondaryIndexes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["IndexName"] == json!(name))
                .unwrap_or_else(|| panic!("no index {name}"))
                .clone()
        };
        for (name, hash, range) in [("by-request", "request_id", "stage"), ("open-jobs", "open", "planned_at")] {
            let index = index(name);
            assert_eq!(index["KeySchema"][0]["AttributeName"], json!(hash));
            assert_eq!(index["KeySchema"][1]["AttributeName"], json!(range));
            assert_eq!(index["Projection"]["ProjectionType"], json!("ALL"));
        }
        let ttl = update_ttl_request(properties, "t").unwrap().unwrap();
        assert_eq!(ttl["TimeToLiveSpecification"]["AttributeName"], json!("expires_at"));
    }

    #[test]
    fn repository_template_defines_the_cache_table() {
        let path = crate::paths::repo_root().join("template.yaml");
        let template = load_template(&path).unwrap();
        let properties = cache_table_properties(&template).unwrap();
        let request = create_table_request(properties, "t").unwrap();
        assert_eq!(request["BillingMode"], json!("PAY_PER_REQUEST"));
        assert_eq!(request["KeySchema"][0]["AttributeName"], json!("pk"));
        assert!(update_ttl_request(properties, "t").unwrap().is_some());
    }
}
