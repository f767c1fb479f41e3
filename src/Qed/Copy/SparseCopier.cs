using System.Buffers;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Qed.Extents;
using Qed.IO;

namespace Qed.Copy;

/// <summary>
/// Copies the disk a source device shows (backing chain included) into a target, writing only what the target does not
/// already read, so the target stays sparse. Work grows with the data, not with the size of the disk.
/// </summary>
/// <remarks>
/// 1. A reader walks the source's extent map (<see cref="ExtentMap"/>). Ranges that read as zeros (zero clusters, holes,
///    unallocated ranges of the whole chain) are stepped over whole, however long, without reading them.
/// 2. Data extents are read through the source, neighbours together, in pieces of at most one batch (<see cref="ChunkSize"/>,
///    whatever the number of writers: measured on tmpfs, 1 GiB of random data into QED, batches shared among 8 writers
///    (256 KiB each) took 0.72 s against 0.52 s with whole ones) that never cross an aligned batch
///    boundary, gathered into batches of one buffer.
///    Each batch covers the disk from where the previous one ended, and is numbered in disk order. The reader runs ahead
///    of the writers through a small bounded queue, so reading the next pieces overlaps writing these.
/// 3. A writer takes a batch and decides, per granule (the zero-detection unit: <c>-S</c>, or the target's cluster size)
///    aligned to the disk, what the target needs: nothing (it already reads that), the data, or zeros. What the target
///    reads before the copy is one of: zeros (a new image), unknown (an existing image: everything not written is zeroed),
///    or a baseline device (a new overlay of that device: only granules that differ from it are written).
/// 4. Several writers (<see cref="Writers"/>) prepare batches at once. Their writes go to the target one batch at a time
///    in disk order, each batch's writes issued only once the batch before has finished (the target sees the writes a
///    single writer would make, in the same order), unless <see cref="OutOfOrder"/> lets them run as soon as they are
///    prepared, concurrently.
/// 5. <see cref="Done"/> and the progress callback advance over the batches completed from the start without a gap, so
///    they never claim a range that an out-of-order writer has not finished.
/// 6. The first failure (the reader's or a writer's) cancels the rest and is the one thrown once every task has stopped;
///    a failure is never lost, and the buffers are returned either way.
/// Failures carry qemu-img's wording and the guest offset: <c>error while reading block status at offset N</c>,
/// <c>error while reading at byte N</c>, <c>error while writing at byte N</c>.
/// </remarks>
public sealed class SparseCopier
{
    /// <summary>The largest read: big enough to be sequential, small enough to keep the queue's memory low.</summary>
    internal const int ChunkSize = 2 * 1024 * 1024;

    /// <summary>The most writers allowed (qemu-img's limit for <c>-m</c>).</summary>
    internal const int MaxWriters = 16;

    // Batches queued ahead of the writers: enough to keep both sides busy; each holds a batch buffer.
    private const int QueueDepth = 2;
    private const int SectorSize = 512;

    private readonly BlockDevice _source;
    private readonly BlockDevice _target;
    private readonly long _size;
    private readonly int _granule;
    private readonly object _progressLock = new();
    // Ends of the batches finished out of order, by sequence number, until the batches before them finish (under _progressLock).
    private readonly Dictionary<long, long> _finishedAhead = [];
    private long _nextToFinish;
    private long _done;
    private byte[]? _zeros;

    /// <summary>Creates a copier of the first <paramref name="size"/> bytes of <paramref name="source"/>'s disk; bytes past its end read as zeros.</summary>
    /// <param name="source">The device to copy (its backing chain is read through).</param>
    /// <param name="target">A writable device of at least <paramref name="size"/> bytes that reads as zeros.</param>
    /// <param name="size">The size of the copy.</param>
    /// <param name="granule">Smallest unit tested for zeros and written: a power of two or a multiple of 512, at least
    /// 512. The target's cluster size keeps a QED target's clusters whole.</param>
    /// <exception cref="QedReadOnlyException">The target is open read-only.</exception>
    /// <exception cref="ArgumentException">The target is smaller than <paramref name="size"/>, or the granule is neither a power of two nor a multiple of 512.</exception>
    public SparseCopier(BlockDevice source, BlockDevice target, long size, int granule = 4096)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (target.IsReadOnly)
        {
            throw new QedReadOnlyException($"'{target.FileName}' is open read-only");
        }
        if (target.Size < size)
        {
            throw new ArgumentException($"'{target.FileName}' has {target.Size} bytes, fewer than the {size} to copy", nameof(target));
        }
        if (granule <= 0 || ((granule & (granule - 1)) != 0 && granule % SectorSize != 0))
        {
            throw new ArgumentException($"The granule {granule} is neither a power of two nor a multiple of {SectorSize}", nameof(granule));
        }
        _source = source;
        _target = target;
        _size = size;
        _granule = Math.Max(granule, SectorSize);
    }

    /// <summary>What the target reads before the copy: zeros (the default), unknown, or <see cref="Baseline"/>'s disk.</summary>
    internal TargetContent TargetContent { get; init; } = TargetContent.Zeros;

    /// <summary>With <see cref="TargetContent.Baseline"/>: the device the target reads through where it has nothing (its backing image).</summary>
    internal BlockDevice? Baseline { get; init; }

    /// <summary>Writes every byte as data, zeros included, so the target ends fully allocated (qemu-img's <c>-S 0</c>).</summary>
    internal bool WriteEverything { get; init; }

    /// <summary>Batches prepared at once, 1 to <see cref="MaxWriters"/> (qemu-img's <c>-m</c>).</summary>
    internal int Writers { get; init; } = 1;

    /// <summary>Lets the writers' writes run concurrently and out of disk order (qemu-img's <c>-W</c>).</summary>
    internal bool OutOfOrder { get; init; }

    /// <summary>Bytes of the disk handled so far (copied or skipped), from the start without a gap.</summary>
    public long Done => Volatile.Read(ref _done);

    /// <summary>Copies everything, calling <paramref name="progress"/> (done, total) as the copy advances.</summary>
    public void Copy(Action<long, long>? progress = null) =>
        CopyCoreAsync(progress, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Copy"/>
    public Task CopyAsync(Action<long, long>? progress = null, CancellationToken cancellationToken = default) =>
        CopyCoreAsync(progress, useAsync: true, cancellationToken);

    private async Task CopyCoreAsync(Action<long, long>? progress, bool useAsync, CancellationToken cancellationToken)
    {
        if (Writers is < 1 or > MaxWriters)
        {
            throw new InvalidOperationException($"Writers is {Writers}; it must be between 1 and {MaxWriters}");
        }
        if ((TargetContent == TargetContent.Baseline) != (Baseline is not null))
        {
            throw new InvalidOperationException("A baseline device goes with TargetContent.Baseline, and only with it");
        }
        if (WriteEverything)
        {
            _zeros = new byte[ChunkSize];
        }
        var run = new CopyRun(this, progress, useAsync, cancellationToken);
        await run.RunAsync().ConfigureAwait(false);
    }

    private long NextBoundary(long offset) => (offset / ChunkSize + 1) * ChunkSize;

    /// <summary>Records that the batch numbered <paramref name="sequence"/> is finished; advances <see cref="Done"/> over the batches finished from the start.</summary>
    private void Finish(long sequence, long end, Action<long, long>? progress)
    {
        lock (_progressLock)
        {
            _finishedAhead[sequence] = end;
            long done = -1;
            while (_finishedAhead.Remove(_nextToFinish, out long finishedEnd))
            {
                done = finishedEnd;
                _nextToFinish++;
            }
            if (done >= 0)
            {
                Volatile.Write(ref _done, done);
                // Under the lock, so the callback sees one caller at a time and values that only grow.
                progress?.Invoke(done, _size);
            }
        }
    }

    /// <summary>One run of <see cref="CopyAsync"/>: the reader, the writers, the write turns and the first failure.</summary>
    private sealed class CopyRun
    {
        private readonly SparseCopier _copier;
        private readonly Action<long, long>? _progress;
        private readonly bool _useAsync;
        private readonly CancellationToken _callerToken;
        private readonly CancellationTokenSource _cancel;
        private readonly Channel<Batch> _queue;
        private readonly WriteTurns _turns = new();
        private ExceptionDispatchInfo? _failure;

        public CopyRun(SparseCopier copier, Action<long, long>? progress, bool useAsync, CancellationToken cancellationToken)
        {
            _copier = copier;
            _progress = progress;
            _useAsync = useAsync;
            _callerToken = cancellationToken;
            _cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            _queue = Channel.CreateBounded<Batch>(new BoundedChannelOptions(QueueDepth)
            {
                SingleReader = copier.Writers == 1,
                SingleWriter = true,
            });
        }

        public async Task RunAsync()
        {
            using (_cancel)
            {
                var token = _cancel.Token;
                var tasks = new Task[_copier.Writers + 1];
                tasks[0] = Task.Run(() => Guard(new BatchReader(_copier, _queue.Writer, _useAsync, token).RunAsync), CancellationToken.None);
                for (int i = 1; i < tasks.Length; i++)
                {
                    tasks[i] = Task.Run(() => Guard(() => WriteBatchesAsync(token)), CancellationToken.None);
                }
                // Guard catches everything, so these never fault; every task has stopped before the buffers are counted back.
                await Task.WhenAll(tasks).ConfigureAwait(false);
                Drain(_queue.Reader);
            }
            _failure?.Throw();
            _callerToken.ThrowIfCancellationRequested();
        }

        /// <summary>Runs a task's body and keeps its failure if it is the first (a cancellation caused by another failure is not one).</summary>
        private async Task Guard(Func<Task> body)
        {
            try
            {
                await body().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                bool consequence = e is OperationCanceledException && _cancel.IsCancellationRequested;
                if (!consequence)
                {
                    Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
                }
                _queue.Writer.TryComplete();
                _turns.Abort();
                try
                {
                    await _cancel.CancelAsync().ConfigureAwait(false);
                }
                catch (ObjectDisposedException)
                {
                    // Cannot happen while RunAsync waits for this task; kept so a failure path never throws.
                }
            }
        }

        private async Task WriteBatchesAsync(CancellationToken cancellationToken)
        {
            var reader = _queue.Reader;
            var writer = new BatchWriter(_copier, _useAsync, cancellationToken);
            try
            {
                while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    if (!reader.TryRead(out var batch))
                    {
                        continue;
                    }
                    try
                    {
                        // The decisions (zero tests, baseline reads) are made by all writers at once; the writes wait their turn.
                        await writer.PrepareAsync(batch).ConfigureAwait(false);
                        if (!_copier.OutOfOrder)
                        {
                            await _turns.WaitAsync(batch.Sequence, cancellationToken).ConfigureAwait(false);
                        }
                        try
                        {
                            await writer.ExecuteAsync(batch).ConfigureAwait(false);
                        }
                        finally
                        {
                            if (!_copier.OutOfOrder)
                            {
                                _turns.Pass(batch.Sequence);
                            }
                        }
                    }
                    finally
                    {
                        batch.ReturnBuffer();
                        writer.ReturnBuffer();
                    }
                    _copier.Finish(batch.Sequence, batch.End, _progress);
                }
            }
            finally
            {
                writer.ReturnBuffer();
            }
        }
    }

    /// <summary>Lets batches write one at a time in their disk order: the batch numbered N writes once batch N-1 has passed.</summary>
    private sealed class WriteTurns
    {
        private readonly object _lock = new();
        private readonly Dictionary<long, TaskCompletionSource> _waiting = [];
        private long _next;
        private bool _aborted;

        /// <summary>Completes when it is batch <paramref name="sequence"/>'s turn.</summary>
        public Task WaitAsync(long sequence, CancellationToken cancellationToken)
        {
            TaskCompletionSource waiter;
            lock (_lock)
            {
                if (_aborted)
                {
                    return Task.FromCanceled(cancellationToken.IsCancellationRequested ? cancellationToken : new CancellationToken(true));
                }
                if (sequence == _next)
                {
                    return Task.CompletedTask;
                }
                // Continuations run on the pool, never inline inside Pass's caller (which may still hold resources).
                waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiting.Add(sequence, waiter);
            }
            return waiter.Task.WaitAsync(cancellationToken);
        }

        /// <summary>Batch <paramref name="sequence"/> has written: the next one may.</summary>
        public void Pass(long sequence)
        {
            TaskCompletionSource? next;
            lock (_lock)
            {
                System.Diagnostics.Debug.Assert(sequence == _next, $"batch {sequence} passed during batch {_next}'s turn");
                _next = sequence + 1;
                _waiting.Remove(_next, out next);
            }
            next?.TrySetResult();
        }

        /// <summary>A failure stops the copy: every waiting batch is cancelled.</summary>
        public void Abort()
        {
            List<TaskCompletionSource> waiting;
            lock (_lock)
            {
                _aborted = true;
                waiting = [.. _waiting.Values];
                _waiting.Clear();
            }
            foreach (var waiter in waiting)
            {
                waiter.TrySetCanceled();
            }
        }
    }

    /// <summary>Returns the buffers of the batches a failure left in the queue.</summary>
    private static void Drain(ChannelReader<Batch> queue)
    {
        while (queue.TryRead(out var batch))
        {
            batch.ReturnBuffer();
        }
    }

    /// <summary>A piece of data in a batch: <see cref="Length"/> bytes of the disk at <see cref="Offset"/>, at <see cref="BufferOffset"/> in the batch's buffer.</summary>
    private readonly record struct Segment(long Offset, int Length, int BufferOffset);

    /// <summary>What a writer does to a range of the target.</summary>
    private enum ActionKind
    {
        /// <summary>The target already reads what the source shows.</summary>
        Skip,

        /// <summary>Write the source's bytes.</summary>
        Data,

        /// <summary>Make the range read as zeros.</summary>
        Zeroes,
    }

    /// <summary>A prepared write: <see cref="Data"/> at <see cref="Offset"/>, or zeros over <see cref="Length"/> bytes when <see cref="Data"/> is empty.</summary>
    private readonly record struct WriteAction(long Offset, long Length, ReadOnlyMemory<byte> Data, bool Zeroes);

    /// <summary>
    /// The disk from <see cref="Start"/> to <see cref="End"/>: data pieces gathered in one buffer of the batch
    /// size, everything between them reading as zeros in the source. One queue item carries many small scattered pieces,
    /// so the reader and the writers hand over once per buffer, not once per cluster.
    /// </summary>
    private sealed class Batch(long sequence, long start)
    {
        public long Sequence { get; } = sequence;

        public long Start { get; } = start;

        public byte[]? Buffer { get; set; }

        public List<Segment> Segments { get; } = [];

        /// <summary>Bytes of <see cref="Buffer"/> in use.</summary>
        public int Used { get; set; }

        public long End { get; set; } = start;

        public List<WriteAction> Actions { get; } = [];

        public void ReturnBuffer()
        {
            if (Buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(Buffer);
                Buffer = null;
            }
        }
    }

    /// <summary>Decides the writes a batch needs (<see cref="PrepareAsync"/>) and issues them (<see cref="ExecuteAsync"/>).</summary>
    private sealed class BatchWriter(SparseCopier copier, bool useAsync, CancellationToken cancellationToken)
    {
        /// <summary>The baseline's bytes for the batch being prepared (with <see cref="TargetContent.Baseline"/>).</summary>
        private byte[]? _baseline;

        public void ReturnBuffer()
        {
            if (_baseline is not null)
            {
                ArrayPool<byte>.Shared.Return(_baseline);
                _baseline = null;
            }
        }

        public async ValueTask PrepareAsync(Batch batch)
        {
            var actions = batch.Actions;
            long position = batch.Start;
            foreach (var segment in batch.Segments)
            {
                await PrepareGapAsync(actions, position, segment.Offset).ConfigureAwait(false);
                ReadOnlyMemory<byte> baseline = default;
                if (copier.TargetContent == TargetContent.Baseline && !copier.WriteEverything)
                {
                    _baseline ??= ArrayPool<byte>.Shared.Rent(ChunkSize);
                    baseline = _baseline.AsMemory(segment.BufferOffset, segment.Length);
                    await ReadBaselineAsync(_baseline.AsMemory(segment.BufferOffset, segment.Length), segment.Offset).ConfigureAwait(false);
                }
                Classify(actions, batch.Buffer.AsMemory(segment.BufferOffset, segment.Length), baseline, segment.Offset);
                position = segment.Offset + segment.Length;
            }
            await PrepareGapAsync(actions, position, batch.End).ConfigureAwait(false);
        }

        public async ValueTask ExecuteAsync(Batch batch)
        {
            var target = copier._target;
            foreach (var action in batch.Actions)
            {
                try
                {
                    if (action.Zeroes)
                    {
                        await target.WriteZeroesCoreAsync(action.Offset, action.Length, mayUnmap: true, useAsync, cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        await target.WriteCoreAsync(action.Data, action.Offset, useAsync, cancellationToken).ConfigureAwait(false);
                    }
                }
                catch (IOException e)
                {
                    throw new IOException($"error while writing at byte {action.Offset}: {e.Message}", e);
                }
            }
        }

        /// <summary>The writes for <c>[start, end)</c>, which reads as zeros in the source.</summary>
        private async ValueTask PrepareGapAsync(List<WriteAction> actions, long start, long end)
        {
            if (start >= end)
            {
                return;
            }
            if (copier.WriteEverything)
            {
                var zeros = copier._zeros!;
                for (long offset = start; offset < end; offset += zeros.Length)
                {
                    int length = (int)Math.Min(zeros.Length, end - offset);
                    actions.Add(new WriteAction(offset, length, zeros.AsMemory(0, length), Zeroes: false));
                }
                return;
            }
            switch (copier.TargetContent)
            {
                case TargetContent.Zeros:
                    return;
                case TargetContent.Unknown:
                    actions.Add(new WriteAction(start, end - start, default, Zeroes: true));
                    return;
            }
            // Zeros over an overlay: only where the baseline reads something else. Its zero ranges are stepped over unread.
            var baseline = copier.Baseline!;
            long readable = Math.Min(end, baseline.Size);
            if (start >= readable)
            {
                return;
            }
            var walker = new ExtentWalker(baseline, start, readable);
            while (await NextBaselineExtentAsync(walker).ConfigureAwait(false) is { } extent)
            {
                if (!extent.IsData)
                {
                    continue;
                }
                for (long offset = extent.Offset; offset < extent.End;)
                {
                    int length = (int)(Math.Min(copier.NextBoundary(offset), extent.End) - offset);
                    // A buffer of its own: the batch's baseline buffer holds the segments' baseline bytes, in use until the writes.
                    var piece = ArrayPool<byte>.Shared.Rent(length);
                    try
                    {
                        await ReadBaselineAsync(piece.AsMemory(0, length), offset).ConfigureAwait(false);
                        AddZeroRuns(actions, piece.AsMemory(0, length), offset);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(piece);
                    }
                    offset += length;
                }
            }
        }

        private async ValueTask<Extent?> NextBaselineExtentAsync(ExtentWalker walker)
        {
            try
            {
                return await walker.NextAsync(useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new IOException($"error while reading block status of the backing image at offset {walker.Probing}: {e.Message}", e);
            }
        }

        /// <summary>Reads the baseline's bytes at <paramref name="offset"/>; past its end they read as zeros.</summary>
        private async ValueTask ReadBaselineAsync(Memory<byte> destination, long offset)
        {
            var baseline = copier.Baseline!;
            int readable = (int)Math.Clamp(baseline.Size - offset, 0, destination.Length);
            destination.Span[readable..].Clear();
            if (readable == 0)
            {
                return;
            }
            try
            {
                await baseline.ReadCoreAsync(destination[..readable], offset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new IOException($"error while reading the backing image at byte {offset}: {e.Message}", e);
            }
        }

        /// <summary>Adds zero writes over the runs of granules of <paramref name="baseline"/> (the baseline's bytes at <paramref name="offset"/>) that are not all zeros.</summary>
        private void AddZeroRuns(List<WriteAction> actions, ReadOnlyMemory<byte> baseline, long offset) =>
            Runs(actions, baseline.Length, offset, (start, end) =>
                baseline.Span[start..end].IndexOfAnyExcept((byte)0) < 0 ? ActionKind.Skip : ActionKind.Zeroes, default);

        /// <summary>Adds the writes for the source's bytes <paramref name="data"/> at <paramref name="offset"/>, granule by granule.</summary>
        private void Classify(List<WriteAction> actions, ReadOnlyMemory<byte> data, ReadOnlyMemory<byte> baseline, long offset)
        {
            if (copier.WriteEverything)
            {
                actions.Add(new WriteAction(offset, data.Length, data, Zeroes: false));
                return;
            }
            var content = copier.TargetContent;
            Runs(actions, data.Length, offset, (start, end) =>
            {
                var bytes = data.Span[start..end];
                bool zero = bytes.IndexOfAnyExcept((byte)0) < 0;
                return content switch
                {
                    TargetContent.Zeros => zero ? ActionKind.Skip : ActionKind.Data,
                    TargetContent.Unknown => zero ? ActionKind.Zeroes : ActionKind.Data,
                    _ => bytes.SequenceEqual(baseline.Span[start..end]) ? ActionKind.Skip : zero ? ActionKind.Zeroes : ActionKind.Data,
                };
            }, data);
        }

        /// <summary>
        /// Splits <paramref name="length"/> bytes at <paramref name="offset"/> into disk-aligned granules, asks
        /// <paramref name="decide"/> (buffer start, buffer end) about each, and adds one action per run of granules
        /// with the same answer.
        /// </summary>
        private void Runs(List<WriteAction> actions, int length, long offset, Func<int, int, ActionKind> decide, ReadOnlyMemory<byte> data)
        {
            long granule = copier._granule;
            int runStart = 0;
            var runKind = ActionKind.Skip;
            int position = 0;
            while (position < length)
            {
                long granuleEnd = ((offset + position) / granule + 1) * granule;
                int end = (int)Math.Min(granuleEnd - offset, length);
                var kind = decide(position, end);
                if (kind != runKind)
                {
                    AddRun(actions, runKind, runStart, position, offset, data);
                    runStart = position;
                    runKind = kind;
                }
                position = end;
            }
            AddRun(actions, runKind, runStart, length, offset, data);
        }

        private static void AddRun(List<WriteAction> actions, ActionKind kind, int start, int end, long offset, ReadOnlyMemory<byte> data)
        {
            if (end <= start)
            {
                return;
            }
            switch (kind)
            {
                case ActionKind.Data:
                    actions.Add(new WriteAction(offset + start, end - start, data[start..end], Zeroes: false));
                    break;
                case ActionKind.Zeroes:
                    actions.Add(new WriteAction(offset + start, end - start, default, Zeroes: true));
                    break;
            }
        }
    }

    /// <summary>Walks the map and queues, in disk order, batches of the data read (zero ranges are only stepped over).</summary>
    private sealed class BatchReader(SparseCopier copier, ChannelWriter<Batch> queue, bool useAsync, CancellationToken cancellationToken)
    {
        /// <summary>The batch being filled; not queued yet, so its buffer is ours to return on failure.</summary>
        private Batch _batch = new(0, 0);

        public async Task RunAsync()
        {
            try
            {
                await ReadAllAsync().ConfigureAwait(false);
                queue.TryComplete();
            }
            finally
            {
                _batch.ReturnBuffer();
            }
        }

        private async ValueTask ReadAllAsync()
        {
            var source = copier._source;
            long readable = Math.Min(copier._size, source.Size);
            var walker = new ExtentWalker(source, 0, readable);
            // The data run found but not read yet: neighbouring data extents are read together.
            long runStart = 0, runEnd = 0;
            while (true)
            {
                Extent? next;
                try
                {
                    next = await walker.NextAsync(useAsync, cancellationToken).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    throw new IOException($"error while reading block status at offset {walker.Probing}: {e.Message}", e);
                }
                if (next is not { } extent)
                {
                    break;
                }
                if (extent.IsData)
                {
                    if (runEnd != extent.Offset)
                    {
                        runStart = extent.Offset;
                    }
                    runEnd = extent.End;
                    // Read the whole chunks now, so a long data extent streams instead of waiting for its end.
                    while (copier.NextBoundary(runStart) <= runEnd)
                    {
                        long boundary = copier.NextBoundary(runStart);
                        await ReadAsync(runStart, (int)(boundary - runStart)).ConfigureAwait(false);
                        runStart = boundary;
                    }
                    continue;
                }
                if (runEnd > runStart)
                {
                    await ReadAsync(runStart, (int)(runEnd - runStart)).ConfigureAwait(false);
                }
                runStart = runEnd = 0;
                await ExtendAsync(extent.End).ConfigureAwait(false);
            }
            if (runEnd > runStart)
            {
                await ReadAsync(runStart, (int)(runEnd - runStart)).ConfigureAwait(false);
            }
            // Past a short source (qemu rounds raw files up to whole sectors): zeros.
            await ExtendAsync(copier._size).ConfigureAwait(false);
            await QueueAsync().ConfigureAwait(false);
        }

        /// <summary>Extends the batch over a range that reads as zeros, first queuing it when its gap would grow without bound and the writers must fill it.</summary>
        private async ValueTask ExtendAsync(long end)
        {
            // A writer that zeroes or compares a gap works in proportion to it: keep each batch's gap to about one chunk so
            // the work spreads over the writers. A target that already reads zeros needs nothing for a gap, however long.
            bool gapCostsWork = copier.WriteEverything || copier.TargetContent != TargetContent.Zeros;
            while (gapCostsWork && end - _batch.End > ChunkSize)
            {
                _batch.End = copier.NextBoundary(_batch.End);
                await QueueAsync().ConfigureAwait(false);
            }
            _batch.End = Math.Max(_batch.End, end);
        }

        private async ValueTask QueueAsync()
        {
            var full = _batch;
            // Until the queue takes it the batch is ours: on failure RunAsync returns its buffer.
            await queue.WriteAsync(full, cancellationToken).ConfigureAwait(false);
            _batch = new Batch(full.Sequence + 1, full.End);
        }

        /// <summary>Reads a piece of data into the batch, first queuing the batch when the piece does not fit.</summary>
        private async ValueTask ReadAsync(long offset, int length)
        {
            if (_batch.Used + length > ChunkSize)
            {
                await QueueAsync().ConfigureAwait(false);
            }
            _batch.Buffer ??= ArrayPool<byte>.Shared.Rent(ChunkSize);
            try
            {
                await copier._source.ReadCoreAsync(_batch.Buffer.AsMemory(_batch.Used, length), offset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new IOException($"error while reading at byte {offset}: {e.Message}", e);
            }
            _batch.Segments.Add(new Segment(offset, length, _batch.Used));
            _batch.Used += length;
            _batch.End = offset + length;
        }
    }
}

/// <summary>What a <see cref="SparseCopier"/>'s target reads before the copy, which decides what the copy must write.</summary>
internal enum TargetContent
{
    /// <summary>Zeros everywhere (a new image, or <c>--target-is-zero</c>): zero ranges are skipped.</summary>
    Zeros,

    /// <summary>Anything (an existing image): every range the copy does not write data to is made to read as zeros.</summary>
    Unknown,

    /// <summary>The baseline device's disk (a new overlay of it): only granules that differ from it are written.</summary>
    Baseline,
}
