"""``kfaas import sam``: a SAM application turned into kfaas function folders and state machines.

AWS's own translator (aws-sam-translator) turns the template into CloudFormation first, so Globals, implicit
APIs, event sources and policy templates mean here exactly what they mean on AWS; the importer then reads
the CloudFormation resources and writes one ``functions/<name>/`` per Lambda function (its description, a
README and its code, copied from ``CodeUri``) and one ``statemachines/<name>/`` per state machine (the
definition as written). Everything it cannot map is listed in a report, printed and written beside the
output; ``--strict`` makes any such item an error.

- ``_template``: reading the template files, the translator, the parameters;
- ``_intrinsics``: ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join`` resolved to the imported names;
- ``_mapping``: CloudFormation resources → descriptions, with the report's items;
- ``_report``: the report (mapped, noted, unmapped) as text and YAML;
- ``_write``: the folders written (descriptions, READMEs, code, definitions);
- ``cli``: the command.

May import: the spec (the descriptions written are validated with its model) and the shared base. Never the
runtime, the broker, the gateway, render or dev: importing reads a template and writes files.
"""
