//! Tiny helpers over `roxmltree` for the Query protocol's XML answers.
//!
//! Elements are matched by local name, ignoring the `https://iam.amazonaws.com/doc/...`
//! namespace.

use roxmltree::{Document, Node};

use crate::error::AwsError;

/// Parses an XML body.
pub(crate) fn parse(text: &str) -> Result<Document<'_>, AwsError> {
    Document::parse(text).map_err(|e| AwsError::Decode(format!("XML: {e}")))
}

/// The first descendant element of `node` named `name`.
pub(crate) fn find<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The text of the first descendant element named `name`.
pub(crate) fn find_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    find(node, name).map(|n| n.text().unwrap_or_default().to_owned())
}

/// The text of the direct child element named `name`.
pub(crate) fn child_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .map(|n| n.text().unwrap_or_default().to_owned())
}

/// The `<member>` children of the first element named `list`.
pub(crate) fn members<'a, 'i>(node: Node<'a, 'i>, list: &str) -> Vec<Node<'a, 'i>> {
    find(node, list)
        .map(|l| {
            l.children()
                .filter(|n| n.is_element() && n.tag_name().name() == "member")
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iam_lists() {
        let body = r#"<ListUserPoliciesResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
          <ListUserPoliciesResult><PolicyNames><member>a</member><member>b</member></PolicyNames>
          <IsTruncated>false</IsTruncated></ListUserPoliciesResult></ListUserPoliciesResponse>"#;
        let doc = parse(body).unwrap();
        let names: Vec<String> = members(doc.root(), "PolicyNames")
            .into_iter()
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            find_text(doc.root(), "IsTruncated").as_deref(),
            Some("false")
        );
        assert!(parse("<unclosed").is_err());
    }
}
