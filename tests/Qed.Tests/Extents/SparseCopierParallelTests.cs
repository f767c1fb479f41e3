using Qed.Copy;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Extents;

/// <summary>
/// The sparse copier's options (what the target reads before, <c>-S</c>, <c>-m</c>, <c>-W</c>) against an in-memory model:
/// the target ends reading the source, writes only what it needs, in disk order unless out of order is allowed, and a
/// failure anywhere fails the copy.
/// </summary>
public class SparseCopierParallelTests
{
    private const int Block = 4096;

    /// <summary>A random source of <paramref name="blocks"/> blocks: data (sometimes all zeros, sometimes partly), zero and unallocated runs.</summary>
    private static ModelDevice RandomSource(Random random, int blocks)
    {
        var device = new ModelDevice("source", (long)blocks * Block);
        int block = 0;
        while (block < blocks)
        {
            int run = Math.Min(blocks - block, random.Next(1, 600));
            int kind = random.Next(4);
            for (int b = block; b < block + run; b++)
            {
                var state = kind switch { 0 or 1 => BlockState.Data, 2 => BlockState.Zero, _ => BlockState.Unallocated };
                device.SetState(b * Block, Block, state);
                if (state == BlockState.Data)
                {
                    // Data blocks hold random bytes, zeros (data that reads as zero), or a few bytes in a zero block.
                    switch (random.Next(4))
                    {
                        case 0:
                            break;
                        case 1:
                            device.Fill(b * Block + random.Next(Block), 1, (byte)random.Next(1, 256));
                            break;
                        default:
                            random.NextBytes(device.Bytes.AsSpan(b * Block, Block));
                            break;
                    }
                }
            }
            block += run;
        }
        return device;
    }

    private static void AssertContent(ModelDevice source, ModelDevice target, long size)
    {
        var expected = new byte[size];
        var actual = new byte[size];
        source.ReadCoreAsync(expected, 0, false, default).AsTask().GetAwaiter().GetResult();
        target.ReadCoreAsync(actual, 0, false, default).AsTask().GetAwaiter().GetResult();
        int mismatch = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(mismatch == size, $"target differs from the source at byte {mismatch}");
    }

    [Fact]
    public async Task Random_copies_read_as_the_source_and_write_only_what_the_target_needs()
    {
        int seed = TestSeed.For(nameof(Random_copies_read_as_the_source_and_write_only_what_the_target_needs));
        var random = new Random(seed);
        const int Cases = 40;
        int ran = 0;
        for (int i = 0; i < Cases; i++)
        {
            int blocks = random.Next(1, 1500);
            var source = RandomSource(random, blocks);
            long size = source.Size - random.Next(2) * random.Next(Block);
            var content = (TargetContent)random.Next(3);
            int writers = random.Next(1, SparseCopier.MaxWriters + 1);
            bool outOfOrder = random.Next(2) == 0;
            bool everything = random.Next(6) == 0;
            int granule = random.Next(3) switch { 0 => 512 * random.Next(1, 40), 1 => 1 << random.Next(9, 21), _ => Block };
            bool useAsync = random.Next(2) == 0;
            string label = $"case {i}: {blocks} blocks, size {size}, {content}, writers {writers}, out of order {outOfOrder}, everything {everything}, granule {granule}, async {useAsync}";

            ModelDevice? baseline = null;
            var target = new ModelDevice("target", size + random.Next(2) * Block);
            if (content == TargetContent.Unknown)
            {
                random.NextBytes(target.Bytes);
                target.SetState(0, target.Size, BlockState.Data);
            }
            else if (content == TargetContent.Baseline)
            {
                // A baseline that matches the source in places, differs in others and ends early or late.
                baseline = new ModelDevice("baseline", size + (random.Next(2) == 0 ? -Math.Min(size, random.Next(1, 8) * Block) : Block));
                var view = source.Bytes.AsSpan(0, (int)Math.Min(source.Size, baseline.Size));
                view.CopyTo(baseline.Bytes);
                for (long at = 0; at < baseline.Size; at += Block)
                {
                    int length = (int)Math.Min(Block, baseline.Size - at);
                    switch (random.Next(4))
                    {
                        case 0:
                            random.NextBytes(baseline.Bytes.AsSpan((int)at, length));
                            break;
                        case 1:
                            baseline.Bytes.AsSpan((int)at, length).Clear();
                            break;
                    }
                    bool zero = baseline.Bytes.AsSpan((int)at, length).IndexOfAnyExcept((byte)0) < 0;
                    baseline.SetState(at, length, zero && random.Next(2) == 0 ? BlockState.Unallocated : BlockState.Data);
                }
                target.SetBacking(baseline);
            }

            var copier = new SparseCopier(source, target, size, granule)
            {
                TargetContent = content,
                Baseline = baseline,
                Writers = writers,
                OutOfOrder = outOfOrder,
                WriteEverything = everything,
            };
            long last = 0;
            void Progress(long done, long total)
            {
                Assert.True(done > last && done <= size && total == size, $"{label}: progress {done}/{total} after {last}");
                last = done;
            }
            if (useAsync)
            {
                await copier.CopyAsync(Progress);
            }
            else
            {
                copier.Copy(Progress);
            }
            Assert.True(size == copier.Done, label);
            Assert.True(size == 0 || last == size, label);
            AssertContent(source, target, size);
            if (!outOfOrder)
            {
                Assert.True(target.InOrder, $"{label}: a write went backwards ({target.Disorder})");
            }
            Assert.True(outOfOrder || target.MaxInFlight <= 1, $"{label}: {target.MaxInFlight} writes overlapped in order");
            if (!everything)
            {
                // Nothing written needlessly: each written granule differs from what the target read before.
                foreach (var write in target.Writes)
                {
                    var before = content switch
                    {
                        TargetContent.Zeros => new byte[write.Length],
                        TargetContent.Baseline => Slice(baseline!, write.Offset, (int)write.Length),
                        _ => null,
                    };
                    if (before is null)
                    {
                        continue;
                    }
                    for (long g = write.Offset / granule * granule; g < write.Offset + write.Length; g += granule)
                    {
                        long from = Math.Max(g, write.Offset), to = Math.Min(g + granule, write.Offset + write.Length);
                        var wanted = Slice(source, from, (int)(to - from));
                        Assert.False(wanted.AsSpan().SequenceEqual(before.AsSpan((int)(from - write.Offset), (int)(to - from))),
                            $"{label}: wrote [{from}, {to}), which the target already read");
                    }
                }
            }
            ran++;
        }
        TestSeed.Report($"{ran} random copies checked");
        Assert.Equal(Cases, ran);
    }

    private static byte[] Slice(ModelDevice device, long offset, int length)
    {
        // Past the device's end it reads as zeros, as the copier reads a short baseline.
        var bytes = new byte[length];
        int readable = (int)Math.Clamp(device.Size - offset, 0, length);
        device.ReadCoreAsync(bytes.AsMemory(0, readable), offset, false, default).AsTask().GetAwaiter().GetResult();
        return bytes;
    }

    /// <summary>With several writers and out of order allowed, writes overlap; without it they never do, and go in disk order.</summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task Writers_overlap_only_out_of_order(bool outOfOrder, bool useAsync)
    {
        var source = new ModelDevice("source", 32L * 1024 * 1024);
        source.Fill(0, (int)source.Size, 0x5a);
        source.SetState(0, source.Size, BlockState.Data);
        var target = new ModelDevice("target", source.Size) { WriteDelay = TimeSpan.FromMilliseconds(5) };
        var copier = new SparseCopier(source, target, source.Size) { Writers = 8, OutOfOrder = outOfOrder };
        if (useAsync)
        {
            await copier.CopyAsync();
        }
        else
        {
            copier.Copy();
        }
        AssertContent(source, target, source.Size);
        TestSeed.Report($"out of order {outOfOrder}: at most {target.MaxInFlight} writes in flight, {target.Writes.Count} writes");
        if (outOfOrder)
        {
            Assert.True(target.MaxInFlight > 1, "8 writers out of order never overlapped");
        }
        else
        {
            Assert.Equal(1, target.MaxInFlight);
            Assert.True(target.InOrder, target.Disorder);
        }
    }

    public static TheoryData<int, bool, bool, int> Failures()
    {
        var data = new TheoryData<int, bool, bool, int>();
        foreach (int writers in new[] { 1, 8 })
        {
            foreach (bool outOfOrder in new[] { false, true })
            {
                foreach (bool useAsync in new[] { false, true })
                {
                    foreach (int failAt in new[] { 1, 5 })
                    {
                        data.Add(writers, outOfOrder, useAsync, failAt);
                    }
                }
            }
        }
        return data;
    }

    /// <summary>A write that fails fails the copy with its offset and cause, whichever writer it happens in; nothing hangs.</summary>
    [Theory]
    [MemberData(nameof(Failures))]
    public async Task A_failing_write_fails_the_copy(int writers, bool outOfOrder, bool useAsync, int failAt)
    {
        var source = new ModelDevice("source", 16L * 1024 * 1024);
        source.Fill(0, (int)source.Size, 0x11);
        source.SetState(0, source.Size, BlockState.Data);
        var target = new ModelDevice("target", source.Size) { FailWrite = failAt };
        var copier = new SparseCopier(source, target, source.Size) { Writers = writers, OutOfOrder = outOfOrder };
        var copy = useAsync ? copier.CopyAsync() : Task.Run(() => copier.Copy());
        var finished = await Task.WhenAny(copy, Task.Delay(TimeSpan.FromSeconds(30)));
        Assert.Same(copy, finished);
        var e = await Assert.ThrowsAsync<IOException>(() => copy);
        Assert.StartsWith("error while writing at byte ", e.Message);
        Assert.EndsWith(": injected write failure", e.Message);
        Assert.True(copier.Done < source.Size);
    }

    /// <summary>A read that fails fails the copy too, with the reader's wording.</summary>
    [Theory]
    [InlineData(1, false)]
    [InlineData(8, true)]
    public async Task A_failing_read_fails_the_copy(int writers, bool useAsync)
    {
        var source = new ModelDevice("source", 32L * 1024 * 1024) { FailRead = 4 };
        source.Fill(0, (int)source.Size, 0x11);
        source.SetState(0, source.Size, BlockState.Data);
        var target = new ModelDevice("target", source.Size);
        var copier = new SparseCopier(source, target, source.Size) { Writers = writers, OutOfOrder = true };
        var copy = useAsync ? copier.CopyAsync() : Task.Run(() => copier.Copy());
        var e = await Assert.ThrowsAsync<IOException>(() => copy);
        Assert.Equal($"error while reading at byte {3L * SparseCopier.ChunkSize}: injected read failure", e.Message);
    }

    /// <summary>A disk in memory with a status per 512-byte sector and an optional backing device; records and checks its writes.</summary>
    private sealed class ModelDevice : BlockDevice
    {
        private const int Sector = 512;
        private readonly BlockState[] _states;
        private readonly object _lock = new();
        private BlockDevice? _backing;
        private long _lastEnd;
        private int _inFlight;
        private int _writes;
        private int _reads;

        public ModelDevice(string name, long size)
        {
            FileName = name;
            Bytes = new byte[size];
            _states = new BlockState[(size + Sector - 1) / Sector];
            Array.Fill(_states, BlockState.Unallocated);
        }

        public byte[] Bytes { get; }

        public List<(long Offset, long Length)> Writes { get; } = [];

        public bool InOrder { get; private set; } = true;

        public string Disorder { get; private set; } = "";

        public int MaxInFlight { get; private set; }

        public TimeSpan WriteDelay { get; init; }

        /// <summary>The write (counted from 1) that fails, or 0.</summary>
        public int FailWrite { get; init; }

        /// <summary>The read (counted from 1) that fails, or 0.</summary>
        public int FailRead { get; init; }

        public override long Size => Bytes.LongLength;

        public override bool IsReadOnly => false;

        public override string FormatName => "model";

        public override string FileName { get; }

        public override BlockDevice? Backing => _backing;

        public void SetBacking(BlockDevice backing) => _backing = backing;

        public void SetState(long offset, long length, BlockState state) =>
            _states.AsSpan((int)(offset / Sector), (int)((length + Sector - 1) / Sector)).Fill(state);

        public void Fill(long offset, int length, byte value) => Bytes.AsSpan((int)offset, length).Fill(value);

        protected internal override async ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
        {
            if (FailRead != 0 && Interlocked.Increment(ref _reads) == FailRead)
            {
                throw new IOException("injected read failure");
            }
            for (int i = 0; i < destination.Length;)
            {
                long at = offset + i;
                int sector = (int)(at / Sector);
                int length = (int)Math.Min(destination.Length - i, (sector + 1L) * Sector - at);
                var piece = destination.Slice(i, length);
                switch (_states[sector])
                {
                    case BlockState.Data:
                        Bytes.AsMemory((int)at, length).CopyTo(piece);
                        break;
                    case BlockState.Unallocated when _backing is not null && at < _backing.Size:
                        int readable = (int)Math.Min(length, _backing.Size - at);
                        await _backing.ReadCoreAsync(piece[..readable], at, useAsync, cancellationToken);
                        piece.Span[readable..].Clear();
                        break;
                    default:
                        piece.Span.Clear();
                        break;
                }
                i += length;
            }
        }

        protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
            RecordAsync(offset, source.Length, () =>
            {
                source.CopyTo(Bytes.AsMemory((int)offset));
                MarkData(offset, source.Length);
            });

        protected internal override ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken) =>
            RecordAsync(offset, length, () =>
            {
                Bytes.AsSpan((int)offset, (int)length).Clear();
                MarkData(offset, length);
            });

        /// <summary>Keeps sub-sector writes exact: a partly written sector becomes data with what it read before.</summary>
        private void MarkData(long offset, long length)
        {
            for (long sector = offset / Sector; sector * Sector < offset + length; sector++)
            {
                long start = sector * Sector;
                bool whole = start >= offset && Math.Min(start + Sector, Size) <= offset + length;
                if (_states[sector] != BlockState.Data && !whole)
                {
                    int count = (int)Math.Min(Sector, Size - start);
                    var before = new byte[count];
                    ReadCoreAsync(before, start, false, default).AsTask().GetAwaiter().GetResult();
                    for (int i = 0; i < count; i++)
                    {
                        long at = start + i;
                        if (at < offset || at >= offset + length)
                        {
                            Bytes[at] = before[i];
                        }
                    }
                }
                _states[sector] = BlockState.Data;
            }
        }

        private async ValueTask RecordAsync(long offset, long length, Action apply)
        {
            lock (_lock)
            {
                _inFlight++;
                MaxInFlight = Math.Max(MaxInFlight, _inFlight);
                if (offset < _lastEnd && InOrder)
                {
                    InOrder = false;
                    Disorder = $"write at {offset} after one ending at {_lastEnd}";
                }
                _lastEnd = offset + length;
                Writes.Add((offset, length));
            }
            try
            {
                if (FailWrite != 0 && Interlocked.Increment(ref _writes) == FailWrite)
                {
                    throw new IOException("injected write failure");
                }
                if (WriteDelay > TimeSpan.Zero)
                {
                    await Task.Delay(WriteDelay);
                }
                lock (_lock)
                {
                    apply();
                }
            }
            finally
            {
                lock (_lock)
                {
                    _inFlight--;
                }
            }
        }

        protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        protected internal override ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
        {
            int first = (int)(offset / Sector);
            var state = _states[first];
            long end = offset;
            int sector = first;
            while (end < offset + length && sector < _states.Length && _states[sector] == state)
            {
                end = Math.Min((sector + 1L) * Sector, offset + length);
                sector++;
            }
            return new(new BlockStatus(offset, end - offset, state, state == BlockState.Data ? offset : -1));
        }

        protected override ValueTask CloseCoreAsync(bool useAsync) => ValueTask.CompletedTask;
    }
}
