//! Process-wide shared state of a [`crate::Runtime`]: shared data (key/value with CAS) and
//! shared queues, both scoped by `vm_id` like in Envoy.
//!
//! These are only touched when a filter calls the shared-data or queue host functions, so a
//! plain mutex is fine; nothing on the per-request path locks here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use crate::limits::{MAX_QUEUE_ITEMS, MAX_QUEUES, MAX_SHARED_KEYS};

/// Shared data and queues for every plugin of one runtime.
#[derive(Debug, Default)]
pub(crate) struct SharedState {
    data: Mutex<HashMap<String, HashMap<String, SharedValue>>>,
    queues: Mutex<Queues>,
}

#[derive(Debug, Clone)]
struct SharedValue {
    bytes: Vec<u8>,
    cas: u32,
}

/// Result of a shared-data write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SetOutcome {
    Ok,
    CasMismatch,
    TooManyKeys,
}

/// Pending queue-ready notifications of one Vm (queue ids, deduplicated).
#[derive(Debug, Default)]
pub(crate) struct QueueNotify {
    pending: Mutex<Vec<u32>>,
}

impl QueueNotify {
    fn push(&self, id: u32) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !p.contains(&id) {
            p.push(id);
        }
    }

    pub(crate) fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[derive(Debug, Default)]
struct Queues {
    by_name: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    /// Vms that registered the queue; each gets `on_queue_ready` when an item arrives.
    listeners: Vec<Weak<QueueNotify>>,
}

/// Result of an enqueue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EnqueueOutcome {
    Ok,
    NotFound,
    Full,
}

/// Result of a dequeue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DequeueOutcome {
    Item(Vec<u8>),
    Empty,
    NotFound,
}

impl SharedState {
    /// Value and CAS token of `key` in `vm_id`'s scope.
    pub(crate) fn get(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        data.get(vm_id)
            .and_then(|m| m.get(key))
            .map(|v| (v.bytes.clone(), v.cas))
    }

    /// Writes `key`; `cas` 0 writes unconditionally, otherwise it must match the current token.
    pub(crate) fn set(&self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> SetOutcome {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let scope = data.entry(vm_id.to_string()).or_default();
        match scope.get_mut(key) {
            Some(existing) => {
                if cas != 0 && cas != existing.cas {
                    return SetOutcome::CasMismatch;
                }
                existing.bytes.clear();
                existing.bytes.extend_from_slice(value);
                existing.cas = existing.cas.wrapping_add(1).max(1);
                SetOutcome::Ok
            }
            None => {
                // Like Envoy, a CAS token against a missing key is ignored: the key is created.
                if scope.len() >= MAX_SHARED_KEYS {
                    return SetOutcome::TooManyKeys;
                }
                scope.insert(
                    key.to_string(),
                    SharedValue {
                        bytes: value.to_vec(),
                        cas: 1,
                    },
                );
                SetOutcome::Ok
            }
        }
    }

    /// Registers (or re-registers) queue `name` in `vm_id`, subscribing `notify`. `None` when
    /// the process already has too many queues.
    pub(crate) fn register_queue(
        &self,
        vm_id: &str,
        name: &str,
        notify: &Arc<QueueNotify>,
    ) -> Option<u32> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let key = (vm_id.to_string(), name.to_string());
        let id = match q.by_name.get(&key) {
            Some(id) => *id,
            None => {
                if q.queues.len() >= MAX_QUEUES {
                    return None;
                }
                let id = q.queues.len() as u32 + 1;
                q.by_name.insert(key, id);
                q.queues.insert(
                    id,
                    Queue {
                        items: VecDeque::new(),
                        listeners: Vec::new(),
                    },
                );
                id
            }
        };
        let queue = q.queues.get_mut(&id)?;
        queue.listeners.retain(|w| w.strong_count() > 0);
        if !queue
            .listeners
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(notify)))
        {
            queue.listeners.push(Arc::downgrade(notify));
        }
        Some(id)
    }

    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32> {
        let q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.by_name
            .get(&(vm_id.to_string(), name.to_string()))
            .copied()
    }

    pub(crate) fn enqueue(&self, id: u32, value: &[u8]) -> EnqueueOutcome {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = q.queues.get_mut(&id) else {
            return EnqueueOutcome::NotFound;
        };
        if queue.items.len() >= MAX_QUEUE_ITEMS {
            return EnqueueOutcome::Full;
        }
        queue.items.push_back(value.to_vec());
        let mut seen = HashSet::new();
        for listener in queue.listeners.iter().filter_map(Weak::upgrade) {
            if seen.insert(Arc::as_ptr(&listener)) {
                listener.push(id);
            }
        }
        EnqueueOutcome::Ok
    }

    pub(crate) fn dequeue(&self, id: u32) -> DequeueOutcome {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        match q.queues.get_mut(&id) {
            None => DequeueOutcome::NotFound,
            Some(queue) => match queue.items.pop_front() {
                Some(item) => DequeueOutcome::Item(item),
                None => DequeueOutcome::Empty,
            },
        }
    }
}
