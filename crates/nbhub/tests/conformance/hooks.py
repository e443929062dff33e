"""schemathesis hooks for nbhub's conformance test (crates/nbhub/tests/conformance.rs).

Loaded with SCHEMATHESIS_HOOKS=<this file>. Adds one check: an operation that JupyterHub's spec
defines must never be answered 405 Method Not Allowed (a 405 there means nbhub lacks the route).
Requests with a method the spec does not define for the path (the coverage phase sends some,
e.g. TRACE) must get a 405 and are left alone.
"""

import schemathesis


@schemathesis.check
def spec_operation_not_405(ctx, response, case):
    """The spec defines this method on this path, so nbhub must not answer 405."""
    if response.status_code == 405 and case.method.upper() == case.operation.method.upper():
        raise AssertionError(
            f"405 Method Not Allowed for {case.operation.method.upper()} {case.operation.path}, "
            "an operation the spec defines"
        )
