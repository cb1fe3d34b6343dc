"""Runs the AWS SAM transform offline and writes the resulting CloudFormation as JSON.

Usage: sam_transform.py TEMPLATE OUTPUT [Name=Value ...]

cfn-lint 1.x validates SAM resources against schemas but does not run the transform, so
errors that only the transform detects (for example an intrinsic function where SAM needs
a literal) would otherwise surface only at deploy time. `cargo xtask test` runs this for
every AuthMode and lints each output.
"""

import json
import os
import sys

# The translator builds a boto3 session for pseudo parameters; it needs a region but makes
# no calls.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402


class NoManagedPolicies:
    """The template grants only inline statements, so no managed-policy names need IAM."""

    def load(self):
        return {}


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, target, *overrides = argv
    with open(source, encoding="utf-8") as handle:
        template = yaml_parse(handle.read())
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(
            properties.get("CodeUri"), str
        ):
            # `sam build`/`sam package` replace local code paths with S3 locations before
            # the transform runs; the transform rejects anything else.
            properties["CodeUri"] = "s3://placeholder-bucket/placeholder-key"
    parameters = dict(override.split("=", 1) for override in overrides)
    output = transform(template, parameters, NoManagedPolicies())
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(output, handle, indent=1)
    print(f"transformed {source} with {parameters or 'defaults'} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
