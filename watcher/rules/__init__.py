"""YAML rules: which events go to which targets.

``model`` holds the types, ``load`` reads rule files strictly, ``match`` decides whether a
rule selects an event.  All of it is pure: values in, values out.
"""
