//! Errors as text for one message: [`chain`], an error followed by its causes.

/// `error: cause: cause's cause`, each from its `Display`, in `source()` order.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn causes_follow_the_error_in_order() {
        let e = Layer(
            "cannot read settings",
            Some(Box::new(Layer(
                "permission denied",
                Some(Box::new(Layer("os error 13", None))),
            ))),
        );
        assert_eq!(
            chain(&e),
            "cannot read settings: permission denied: os error 13"
        );
        assert_eq!(chain(&Layer("alone", None)), "alone");
    }
}
