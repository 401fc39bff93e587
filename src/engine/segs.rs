//! The queue of segments a pipe has received and not yet sent.
//!
//! Most pipes hold one segment at a time (a request, its reply, an idle session's last
//! burst), so the first lives inline and only a deeper queue allocates: an idle or
//! ping-pong session then owns no heap memory for its queues, and holds one pointer, not
//! an empty `VecDeque`, for the rest (a pipe is in every session, idle ones included).

use std::collections::VecDeque;

use super::conn::Seg;

#[derive(Debug, Default)]
pub struct SegQueue {
    /// The front; `None` only when the whole queue is empty.
    first: Option<Seg>,
    /// Made the first time the queue holds two, then kept for the session. Boxed on
    /// purpose: a pointer in every session instead of an empty `VecDeque`.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Seg>>>,
}

impl SegQueue {
    pub fn push_back(&mut self, seg: Seg) {
        if self.first.is_none() {
            self.first = Some(seg);
        } else {
            self.rest.get_or_insert_default().push_back(seg);
        }
    }

    pub fn pop_front(&mut self) -> Option<Seg> {
        let front = self.first.take();
        self.first = self.rest.as_mut().and_then(|r| r.pop_front());
        front
    }

    pub fn front(&self) -> Option<&Seg> {
        self.first.as_ref()
    }

    pub fn front_mut(&mut self) -> Option<&mut Seg> {
        self.first.as_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Front to back.
    pub fn iter(&self) -> impl Iterator<Item = &Seg> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// Empties the queue, front to back.
    pub fn drain(&mut self) -> impl Iterator<Item = Seg> + '_ {
        let rest = self.rest.as_mut().map(|r| r.drain(..));
        self.first
            .take()
            .into_iter()
            .chain(rest.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(n: u8) -> Seg {
        Seg::Out { off: n, len: 1 }
    }

    #[test]
    fn keeps_order_across_the_inline_front_and_the_rest() {
        let mut q = SegQueue::default();
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
        q.push_back(out(1));
        assert!(q.rest.is_none(), "one segment stays inline");
        q.push_back(out(2));
        q.push_back(out(3));
        assert_eq!(
            q.iter().copied().collect::<Vec<_>>(),
            [out(1), out(2), out(3)]
        );
        assert_eq!(q.pop_front(), Some(out(1)));
        assert_eq!(q.front(), Some(&out(2)));
        q.push_back(out(4));
        assert_eq!(q.pop_front(), Some(out(2)));
        assert_eq!(q.pop_front(), Some(out(3)));
        assert_eq!(q.pop_front(), Some(out(4)));
        assert!(q.is_empty());
        q.push_back(out(5));
        q.push_back(out(6));
        if let Some(Seg::Out { len, .. }) = q.front_mut() {
            *len = 0;
        }
        assert_eq!(
            q.drain().collect::<Vec<_>>(),
            [Seg::Out { off: 5, len: 0 }, out(6)]
        );
        assert!(q.is_empty());
        assert_eq!(q.iter().count(), 0);
    }
}
