namespace Qed.Nbd.Server.Transmission;

/// <summary>
/// The one writer of a connection's replies. Whoever queues a reply while no write is running becomes the writer and
/// writes everything queued as one gather-write; replies queued meanwhile go out together in the next one. The write
/// runs detached from the caller: a reader that queues a reply never waits for the client to read it (NBD.md 3.5).
/// </summary>
internal sealed class ReplyWriter
{
    /// <summary>Replies held back while the reader still has requests to parse, before they are written anyway.</summary>
    private const int MaxHeld = 32;

    /// <summary>
    /// Batches up to this size are copied into one buffer and sent with a plain send (no buffer list): cheaper than a
    /// gather-write for small replies, which is what a 4 KiB READ is.
    /// </summary>
    private const int CoalesceLimit = 32 * 1024;

    private readonly object _gate = new();
    private readonly Nbd.Transport.NbdTransport _transport;
    private readonly Action<TransmissionRequest> _finished;
    private readonly Action<Exception> _failed;
    private readonly CancellationToken _cancellationToken;
    private readonly List<ReadOnlyMemory<byte>> _buffers = new(64);
    private byte[]? _coalesced;
    private readonly FileRangeSender? _files;
    private List<TransmissionRequest> _queued = new(16);
    private List<TransmissionRequest> _writing = new(16);
    private bool _active;
    private Exception? _failure;

    /// <param name="transport">The connection.</param>
    /// <param name="finished">Called for each request once its reply is written or dropped.</param>
    /// <param name="failed">Called once when a write fails: the connection is gone.</param>
    /// <param name="cancellationToken">Abandons writes (a client that stopped reading, once the server stops).</param>
    /// <param name="files">Sends READ data straight from image files, when the transport allows it.</param>
    public ReplyWriter(Nbd.Transport.NbdTransport transport, Action<TransmissionRequest> finished, Action<Exception> failed, CancellationToken cancellationToken, FileRangeSender? files = null)
    {
        _transport = transport;
        _files = files;
        _finished = finished;
        _failed = failed;
        _cancellationToken = cancellationToken;
    }

    /// <summary>The write failure that ended the connection, if any.</summary>
    public Exception? Failure
    {
        get
        {
            lock (_gate)
            {
                return _failure;
            }
        }
    }

    /// <summary>
    /// Queues a reply. With <paramref name="hold"/> (the reader has more requests already received) it may wait for
    /// <see cref="Flush"/> so that a burst of replies leaves in one write; never across a wait for the network.
    /// </summary>
    public void Enqueue(TransmissionRequest request, bool hold)
    {
        bool start = false;
        lock (_gate)
        {
            if (_failure is null)
            {
                _queued.Add(request);
                if (!_active && (!hold || _queued.Count >= MaxHeld))
                {
                    _active = start = true;
                }

                request = null!;
            }
        }

        if (request is not null)
        {
            _finished(request); // the connection is gone: the reply is dropped
        }
        else if (start)
        {
            _ = DrainAsync();
        }
    }

    /// <summary>Writes what is queued, if no write is running (which would take it anyway).</summary>
    public void Flush()
    {
        lock (_gate)
        {
            if (_active || _queued.Count == 0 || _failure is not null)
            {
                return;
            }

            _active = true;
        }

        _ = DrainAsync();
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            lock (_gate)
            {
                if (_queued.Count == 0 || _failure is not null)
                {
                    _active = false;
                    break;
                }

                (_queued, _writing) = (_writing, _queued);
            }

            Exception? failure = null;
            try
            {
                _buffers.Clear();
                long total = 0;
                foreach (var request in _writing)
                {
                    foreach (var buffer in request.Reply)
                    {
                        _buffers.Add(buffer);
                        total += buffer.Length;
                    }

                    if (request.FileDescriptor >= 0)
                    {
                        // Headers so far, then the data from the file: still one unit, since nobody else writes meanwhile.
                        await WriteBuffersAsync(total).ConfigureAwait(false);
                        _buffers.Clear();
                        total = 0;
                        await _files!.SendAsync(request.FileDescriptor, request.FileOffset, request.FileLength, _cancellationToken).ConfigureAwait(false);
                    }
                }

                await WriteBuffersAsync(total).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                failure = e;
            }

            _buffers.Clear();
            TransmissionRequest[] dropped = [];
            if (failure is not null)
            {
                // The connection is gone: say so before the last request ends (which may let the loop return), then drop
                // what is queued as well.
                lock (_gate)
                {
                    _failure ??= failure;
                    dropped = [.. _queued];
                    _queued.Clear();
                }

                _failed(failure);
            }

            foreach (var request in _writing)
            {
                _finished(request);
            }

            _writing.Clear();
            foreach (var request in dropped)
            {
                _finished(request);
            }
        }
    }

    /// <summary>Writes <see cref="_buffers"/> (<paramref name="total"/> bytes): copied into one buffer when small, else gathered.</summary>
    private ValueTask WriteBuffersAsync(long total)
    {
        if (_buffers.Count == 0)
        {
            return ValueTask.CompletedTask;
        }

        if (total <= CoalesceLimit && _buffers.Count > 1)
        {
            _coalesced ??= new byte[CoalesceLimit];
            int at = 0;
            foreach (var buffer in _buffers)
            {
                buffer.Span.CopyTo(_coalesced.AsSpan(at));
                at += buffer.Length;
            }

            return _transport.WriteAsync(_coalesced.AsMemory(0, (int)total), ReadOnlyMemory<byte>.Empty, _cancellationToken);
        }

        return _transport.WriteAsync(_buffers, _cancellationToken);
    }
}
