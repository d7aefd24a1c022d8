//! A tiny, bounded evaluator for `ComfyMathExpression` formulas.
//!
//! The LTX-2.3 templates compute the frame count as `a * b + 1` (seconds ×
//! fps + 1) and the first-pass size as `a/2`. ComfyUI evaluates these as
//! Python expressions; we understand the arithmetic subset templates use:
//! numbers, single-letter-or-word variables, `+ - * / // % **`, parentheses,
//! unary `+`/`-`, and the calls `abs min max round floor ceil int float`.
//! Anything else (or any error: division by zero, a non-finite result) makes
//! the evaluator return `None`, and callers treat the value as unknown
//! rather than guess.
//!
//! Hostile input is bounded: expressions longer than [`MAX_LEN`] bytes or
//! nested deeper than [`MAX_NESTING`] are not evaluated.

/// Longest expression text we evaluate.
pub const MAX_LEN: usize = 256;
/// Deepest nesting of parentheses, calls and unary operators.
pub const MAX_NESTING: u32 = 32;

/// Evaluates `text` with the variables `vars` (name → value).
pub fn eval(text: &str, vars: &[(String, f64)]) -> Option<f64> {
    if text.len() > MAX_LEN {
        return None;
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        vars,
        nesting: 0,
    };
    let value = parser.expr()?;
    if parser.pos != tokens.len() || !value.is_finite() {
        return None;
    }
    Some(value)
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(f64),
    Ident(String),
    Plus,
    Minus,
    Star,
    Slash,
    SlashSlash,
    Percent,
    StarStar,
    LParen,
    RParen,
    Comma,
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let two = bytes.get(i + 1).copied();
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'0'..=b'9' | b'.' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                // Python exponent notation, e.g. `1e3` or `2.5E-1`.
                if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                    let mut j = i + 1;
                    if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                        j += 1;
                    }
                    if j < bytes.len() && bytes[j].is_ascii_digit() {
                        i = j;
                        while i < bytes.len() && bytes[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
                let number: f64 = text.get(start..i)?.parse().ok()?;
                tokens.push(Token::Num(number));
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                tokens.push(Token::Ident(text.get(start..i)?.to_string()));
            }
            b'+' => {
                tokens.push(Token::Plus);
                i += 1;
            }
            b'-' => {
                tokens.push(Token::Minus);
                i += 1;
            }
            b'*' if two == Some(b'*') => {
                tokens.push(Token::StarStar);
                i += 2;
            }
            b'*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            b'/' if two == Some(b'/') => {
                tokens.push(Token::SlashSlash);
                i += 2;
            }
            b'/' => {
                tokens.push(Token::Slash);
                i += 1;
            }
            b'%' => {
                tokens.push(Token::Percent);
                i += 1;
            }
            b'(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            b')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            b',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(tokens)
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    vars: &'a [(String, f64)],
    nesting: u32,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.nesting += 1;
        (self.nesting <= MAX_NESTING).then_some(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    /// expr := term (('+' | '-') term)*
    fn expr(&mut self) -> Option<f64> {
        let mut value = self.term()?;
        loop {
            if self.eat(&Token::Plus) {
                value += self.term()?;
            } else if self.eat(&Token::Minus) {
                value -= self.term()?;
            } else {
                return Some(value);
            }
        }
    }

    /// term := unary (('*' | '/' | '//' | '%') unary)*
    fn term(&mut self) -> Option<f64> {
        let mut value = self.unary()?;
        loop {
            if self.eat(&Token::Star) {
                value *= self.unary()?;
            } else if self.eat(&Token::Slash) {
                let d = self.unary()?;
                value = nonzero(d).map(|d| value / d)?;
            } else if self.eat(&Token::SlashSlash) {
                let d = self.unary()?;
                value = nonzero(d).map(|d| (value / d).floor())?;
            } else if self.eat(&Token::Percent) {
                // Python's modulo takes the sign of the divisor.
                let d = self.unary()?;
                value = nonzero(d).map(|d| value - d * (value / d).floor())?;
            } else {
                return Some(value);
            }
        }
    }

    /// unary := ('+' | '-') unary | power
    fn unary(&mut self) -> Option<f64> {
        self.enter()?;
        let value = if self.eat(&Token::Minus) {
            self.unary().map(|v| -v)
        } else if self.eat(&Token::Plus) {
            self.unary()
        } else {
            self.power()
        };
        self.leave();
        value
    }

    /// power := atom ('**' unary)?   (right-associative, binds tighter than unary on the left)
    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if self.eat(&Token::StarStar) {
            let exponent = self.unary()?;
            let value = base.powf(exponent);
            return value.is_finite().then_some(value);
        }
        Some(base)
    }

    /// atom := number | variable | call | '(' expr ')'
    fn atom(&mut self) -> Option<f64> {
        match self.peek()?.clone() {
            Token::Num(n) => {
                self.pos += 1;
                Some(n)
            }
            Token::LParen => {
                self.pos += 1;
                self.enter()?;
                let value = self.expr();
                self.leave();
                self.eat(&Token::RParen).then_some(())?;
                value
            }
            Token::Ident(name) => {
                self.pos += 1;
                if self.eat(&Token::LParen) {
                    self.enter()?;
                    let value = self.call(&name);
                    self.leave();
                    value
                } else {
                    self.vars
                        .iter()
                        .find(|(var, _)| *var == name)
                        .map(|(_, value)| *value)
                }
            }
            _ => None,
        }
    }

    /// The arguments and closing parenthesis of a call to `name`.
    fn call(&mut self, name: &str) -> Option<f64> {
        let mut args = Vec::new();
        if !self.eat(&Token::RParen) {
            loop {
                args.push(self.expr()?);
                if args.len() > 8 {
                    return None;
                }
                if self.eat(&Token::RParen) {
                    break;
                }
                self.eat(&Token::Comma).then_some(())?;
            }
        }
        match (name, args.as_slice()) {
            ("abs", [x]) => Some(x.abs()),
            ("round", [x]) => Some(x.round_ties_even()),
            ("floor", [x]) => Some(x.floor()),
            ("ceil", [x]) => Some(x.ceil()),
            ("int", [x]) => Some(x.trunc()),
            ("float", [x]) => Some(*x),
            ("min", [first, rest @ ..]) if !rest.is_empty() => {
                Some(rest.iter().fold(*first, |a, b| a.min(*b)))
            }
            ("max", [first, rest @ ..]) if !rest.is_empty() => {
                Some(rest.iter().fold(*first, |a, b| a.max(*b)))
            }
            _ => None,
        }
    }
}

fn nonzero(d: f64) -> Option<f64> {
    (d != 0.0).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::eval;

    fn vars(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn template_formulas() {
        assert_eq!(
            eval("a * b + 1", &vars(&[("a", 5.0), ("b", 25.0)])),
            Some(126.0)
        );
        assert_eq!(eval("a/2", &vars(&[("a", 720.0)])), Some(360.0));
        assert_eq!(eval("a", &vars(&[("a", 25.0)])), Some(25.0));
    }

    #[test]
    fn python_semantics() {
        let none = vars(&[]);
        assert_eq!(eval("7 // 2", &none), Some(3.0));
        assert_eq!(eval("-7 // 2", &none), Some(-4.0));
        assert_eq!(eval("-7 % 3", &none), Some(2.0));
        assert_eq!(eval("2 ** 3 ** 2", &none), Some(512.0));
        assert_eq!(eval("-2 ** 2", &none), Some(-4.0));
        assert_eq!(eval("(1 + 2) * 3", &none), Some(9.0));
        assert_eq!(eval("max(1, 4, 2) - min(3, 2)", &none), Some(2.0));
        assert_eq!(eval("round(2.5) + int(3.9)", &none), Some(5.0));
        assert_eq!(eval("1e3 + 2.5E-1", &none), Some(1000.25));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let none = vars(&[]);
        assert_eq!(eval("1 / 0", &none), None);
        assert_eq!(eval("a + 1", &none), None);
        assert_eq!(eval("__import__('os')", &none), None);
        assert_eq!(eval("1 +", &none), None);
        assert_eq!(eval("(1", &none), None);
        assert_eq!(eval("1 2", &none), None);
        assert_eq!(eval("10 ** 400", &none), None);
        assert_eq!(eval(&"(".repeat(100), &none), None);
        assert_eq!(
            eval(&format!("{}1{}", "(".repeat(40), ")".repeat(40)), &none),
            None
        );
        assert_eq!(eval(&"-".repeat(200), &none), None);
        assert_eq!(eval(&"1+".repeat(200), &none), None);
    }
}
