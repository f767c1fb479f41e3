using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Qed.Backing;
using Qed.Check;
using Qed.Format;
using Qed.IO;
using Qed.Tables;

namespace Qed.Image;

/// <summary>
/// An open QED image: reads and writes of the virtual disk, mapped through the L1 table and cached L2
/// tables onto the image file, falling through to the backing chain where nothing is allocated.
/// </summary>
/// <remarks>
/// Write ordering (QED-FORMAT.md §5.2, §5.6), for one allocating run of k clusters:
/// <list type="number">
/// <item>Under the allocation lock, look the run up again (another request may have allocated it).</item>
/// <item>Reserve k clusters at the end of the file (the allocation pointer only grows).</item>
/// <item>Without a backing file, set the need-check bit and flush it before the first allocation, so that
/// a crash after any later step is caught by the next writable open.</item>
/// <item>Write the clusters: the untouched head and tail copied from the backing chain (zeros where the
/// cluster was a zero cluster or there is no backing file) and the payload.</item>
/// <item>With a backing file, flush: no table entry may point at a cluster whose copied-up part is not
/// yet stable, or a crash would replace backing data with zeros. Flush too when the clusters reuse the partial last
/// cluster an earlier crash left (the pointer rounds the length down): its old bytes are on disk, so unlike space past
/// the end of the file it would not read as zeros if the entry landed before the data (QEMU does not flush here).</item>
/// <item>If the L2 table exists, write the changed 512-byte blocks of it (from a patched copy, so the
/// cache changes only once the disk did). Otherwise reserve a new table after the data, write it whole,
/// flush, publish it in the cache, then write the L1 block that points at it.</item>
/// </list>
/// A crash between any two steps leaves at worst leaked clusters, never an entry pointing at garbage.
/// Locking: allocations take the gate of their L2 table's stripe (by L1 index), so allocations under
/// different tables run concurrently while two requests for one table serialize and the second looks up
/// again; the allocation pointer moves atomically; L1 block updates and header rewrites each have their own
/// gate, since two tables' L1 entries can share a 512-byte block. Reads and in-place writes take no lock:
/// entries are read atomically, and an entry only ever changes from "not allocated" to a cluster whose data
/// is already written, after its table block reached the file. That is enough: a completed write is visible
/// to every later read, no entry points at unwritten data, and no two allocations share a cluster.
/// Failures: a failed or torn write fails its request only (what it reserved leaks; the cache changes only after the
/// disk did). A failed flush is different: the kernel may have dropped the unwritten pages, so from then on every flush
/// fails with it as the cause (<see cref="FlushFailureLatch"/>): <see cref="BlockDevice.Flush"/>, allocations that must
/// order data before metadata, and the close, which therefore leaves the need-check bit set. Reads and in-place writes
/// keep working.
/// </remarks>
public sealed class QedImage : BlockDevice
{
    private const int CombinedWriteLimit = 1 << 20;
    private const int TableGateStripes = 64;

    private readonly FileAccessor _file;
    private readonly QedGeometry _geometry;
    private readonly ulong _headerBytes;
    private readonly byte[] _l1;
    private readonly L2TableCache _cache;
    private readonly int _sliceBytes;
    private readonly int _sliceShift;
    /// <summary>Stripes of allocation gates, by L1 index: allocations under different L2 tables run concurrently.</summary>
    private readonly AsyncGate[] _tableGates = Enumerable.Range(0, TableGateStripes).Select(_ => new AsyncGate()).ToArray();
    /// <summary>Serializes read-patch-write of L1 blocks (two tables' entries may share a 512-byte block).</summary>
    private readonly AsyncGate _l1Gate = new();
    /// <summary>Serializes header rewrites (need-check bit).</summary>
    private readonly AsyncGate _headerGate = new();
    private readonly object _headerSync = new();
    private readonly Func<L2CacheEntry, bool, CancellationToken, ValueTask> _loadTable;
    private BlockDevice? _backing;
    private QedHeader _header;
    private long _fileEnd;
    /// <summary>The file length at open: clusters reserved below it hold bytes an earlier session left (a partial last cluster).</summary>
    private long _staleEnd;
    private bool _setNeedCheck;

    private QedImage(FileAccessor file, QedHeader header, QedGeometry geometry, byte[] l1, QedOpenOptions options)
    {
        _file = file;
        _header = header;
        _geometry = geometry;
        _headerBytes = (ulong)header.HeaderSize * header.ClusterSize;
        _l1 = l1;
        _staleEnd = file.GetLength();
        _fileEnd = OffsetRules.FileSize(_staleEnd, geometry);
        // The cache holds slices of L2 tables, so a miss reads only the part of a table it needs.
        _sliceBytes = Math.Min(options.L2SliceSize, geometry.TableBytes);
        _sliceShift = System.Numerics.BitOperations.Log2((uint)(_sliceBytes / sizeof(ulong)));
        _cache = new L2TableCache((int)Math.Clamp(options.L2CacheSize / _sliceBytes, 1, int.MaxValue));
        _loadTable = LoadTableAsync;
    }

    /// <summary>The header as it is now on disk.</summary>
    public QedHeader Header
    {
        get
        {
            lock (_headerSync)
            {
                return _header;
            }
        }
    }

    /// <summary>Cluster and table geometry.</summary>
    public QedGeometry Geometry => _geometry;

    /// <summary>The backing file name as stored in the header (up to its first NUL byte, as QEMU reads it), or null when there is none.</summary>
    public string? BackingFileName { get; private set; }

    /// <summary>True when the header names a backing file (a name that is not empty up to its first NUL byte, as QEMU reads it).</summary>
    private bool NamesBackingFile => BackingFileName is not null;

    /// <summary>The backing file name resolved against this image's directory, or null.</summary>
    public string? BackingFilePath { get; private set; }

    /// <summary><c>raw</c> when the header says the backing file is raw (the no-probe bit), else null (the format is probed).</summary>
    public string? BackingFormat => BackingFileName is not null && (Header.Features & QedFeatures.BackingFormatNoProbe) != 0 ? "raw" : null;

    /// <summary>The current end of the allocated area: the file length as QEMU counts it (rounded up to a 512-byte sector, then down to a cluster), plus what this session allocated.</summary>
    public long AllocationEnd => Volatile.Read(ref _fileEnd);

    internal L2TableCache Cache => _cache;

    /// <summary>Counters of the L2 table cache.</summary>
    public L2CacheStatistics CacheStatistics => new(_cache.Hits, _cache.Misses, _cache.Evictions, _cache.Count, _cache.Capacity, _sliceBytes);

    /// <inheritdoc />
    public override long Size => (long)Header.ImageSize;

    /// <inheritdoc />
    public override bool IsReadOnly => _file.IsReadOnly;

    /// <inheritdoc />
    public override string FormatName => "qed";

    /// <inheritdoc />
    public override string FileName => _file.Path;

    /// <inheritdoc />
    public override BlockDevice? Backing => _backing;

    /// <summary>Opens a QED image and its backing chain.</summary>
    /// <exception cref="QedException">The file cannot be opened or is not a valid QED image, or its backing chain cannot be opened.</exception>
    public static QedImage Open(string path, QedOpenOptions? options = null) =>
        OpenCoreAsync(path, options ?? new QedOpenOptions(), BackingChain.Start(path), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Opens a QED image and its backing chain.</summary>
    /// <exception cref="QedException">The file cannot be opened or is not a valid QED image, or its backing chain cannot be opened.</exception>
    public static ValueTask<QedImage> OpenAsync(string path, QedOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        OpenCoreAsync(path, options ?? new QedOpenOptions(), BackingChain.Start(path), useAsync: true, cancellationToken);

    /// <summary>Creates a QED image laid out byte for byte as <c>qemu-img create -f qed</c> does.</summary>
    /// <exception cref="QedException">An option is invalid or would make an image QEMU cannot open.</exception>
    public static void Create(string path, QedCreateOptions options) =>
        QedCreator.CreateAsync(path, options, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Creates a QED image laid out byte for byte as <c>qemu-img create -f qed</c> does.</summary>
    /// <exception cref="QedException">An option is invalid or would make an image QEMU cannot open.</exception>
    public static ValueTask CreateAsync(string path, QedCreateOptions options, CancellationToken cancellationToken = default) =>
        QedCreator.CreateAsync(path, options, useAsync: true, cancellationToken);

    internal static async ValueTask<QedImage> OpenCoreAsync(string path, QedOpenOptions options, BackingChain chain, bool useAsync, CancellationToken cancellationToken)
    {
        var file = HandleFileAccessor.Open(path, options.ReadOnly);
        try
        {
            file.Lock(ImageLockSet.ForOpen("qed", options));
            return await OpenCoreAsync(file, options, chain, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    internal static async ValueTask<QedImage> OpenCoreAsync(FileAccessor file, QedOpenOptions options, BackingChain chain, bool useAsync, CancellationToken cancellationToken)
    {
        // Once a flush has failed no later one may claim durability. The caller still owns (and on failure disposes) the file.
        file = new FlushFailureLatch(file);
        long length = file.GetLength();
        byte[] headerBytes = new byte[HeaderLayout.Size];
        await file.ReadZeroPaddedAsync(headerBytes, 0, useAsync, cancellationToken).ConfigureAwait(false);
        var header = QedHeader.Parse(headerBytes);
        var geometry = HeaderValidator.Validate(header, length);

        string? backingName = null;
        if (header.HasBackingFile)
        {
            byte[] name = new byte[header.BackingFilenameSize];
            await file.ReadZeroPaddedAsync(name, header.BackingFilenameOffset, useAsync, cancellationToken).ConfigureAwait(false);
            // QEMU reads the name as a C string: it ends at the first NUL byte, and an empty one means no backing file.
            int end = Array.IndexOf(name, (byte)0);
            if (end != 0)
            {
                backingName = System.Text.Encoding.UTF8.GetString(name, 0, end < 0 ? name.Length : end);
            }
        }

        byte[] l1 = new byte[geometry.TableBytes];
        await file.ReadZeroPaddedAsync(l1, (long)header.L1TableOffset, useAsync, cancellationToken).ConfigureAwait(false);

        var image = new QedImage(file, header, geometry, l1, options) { BackingFileName = backingName };
        try
        {
            // Everything that can fail without writing comes first, so a failed open leaves the file as it was.
            if (backingName is not null)
            {
                image.BackingFilePath = BackingChain.Resolve(file.Path, backingName);
                if (!options.NoBacking)
                {
                    bool raw = (header.Features & QedFeatures.BackingFormatNoProbe) != 0;
                    image._backing = await chain.OpenBackingAsync(image.BackingFilePath, raw ? "raw" : null, options, useAsync, cancellationToken).ConfigureAwait(false);
                }
            }
            if (!file.IsReadOnly && header.AutoclearFeatures != 0)
            {
                // Unknown auto-clear bits describe data a newer writer kept in sync; we cannot, so they go.
                header = header with { AutoclearFeatures = 0 };
                await WriteHeaderSectorAsync(file, header, useAsync, cancellationToken).ConfigureAwait(false);
                await file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
                image.SetHeader(header);
            }
            if (!file.IsReadOnly && header.NeedsCheck && !options.SkipCheckOnOpen)
            {
                // A writer left the metadata possibly inconsistent: repair before first use (§8.6). As in QEMU, a repair
                // that could not read or write fails the open; the bit stays set, so the next open repairs again.
                var (result, failure) = await image.RunCheckAsync(RepairMode.All, useAsync, cancellationToken).ConfigureAwait(false);
                if (result.CheckErrors > 0)
                {
                    throw new QedException($"'{file.Path}' was not closed cleanly and repairing it failed: {result.FirstError}", failure);
                }
            }
        }
        catch
        {
            image._backing?.Dispose();
            throw;
        }
        return image;
    }

    // ---- check ----

    /// <summary>Checks the image's metadata and, with <paramref name="mode"/>, repairs what can be repaired safely (QED-FORMAT.md §8). No other request may use the image meanwhile.</summary>
    public CheckResult Check(RepairMode mode = RepairMode.None) =>
        CheckCoreAsync(mode, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Check"/>
    public ValueTask<CheckResult> CheckAsync(RepairMode mode = RepairMode.None, CancellationToken cancellationToken = default) =>
        CheckCoreAsync(mode, useAsync: true, cancellationToken);

    private async ValueTask<CheckResult> CheckCoreAsync(RepairMode mode, bool useAsync, CancellationToken cancellationToken) =>
        (await RunCheckAsync(mode, useAsync, cancellationToken).ConfigureAwait(false)).Result;

    /// <summary>Runs the check; also returns the first I/O error it counted in <see cref="CheckResult.CheckErrors"/>.</summary>
    private async ValueTask<(CheckResult Result, IOException? FirstFailure)> RunCheckAsync(RepairMode mode, bool useAsync, CancellationToken cancellationToken)
    {
        if (mode != RepairMode.None && IsReadOnly)
        {
            throw new QedException($"'{FileName}' is open read-only: a repair needs write access");
        }
        // The check needs the metadata still: no allocation may run while it does.
        foreach (var gate in _tableGates)
        {
            await gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        }
        try
        {
            var checker = new QedChecker(_file, Header, _geometry, _l1, Volatile.Read(ref _fileEnd));
            var result = await checker.CheckAsync(mode, useAsync, cancellationToken).ConfigureAwait(false);
            if (checker.TablesChanged)
            {
                _cache.Clear();
            }
            if (checker.TruncatedTo >= 0)
            {
                Volatile.Write(ref _fileEnd, checker.TruncatedTo);
                // A flush always follows the truncate before data lands there again (the header update here, the need-check
                // bit or the backing flush of the next allocation), so the space past it reads as zeros like new space.
                Volatile.Write(ref _staleEnd, Math.Min(Volatile.Read(ref _staleEnd), checker.TruncatedTo));
            }
            var header = Header;
            if (mode != RepairMode.None && header.NeedsCheck && result.Corruptions == 0 && result.CheckErrors == 0)
            {
                // Unlike QEMU (§5.7), the bit is cleared only when nothing unfixable remains.
                await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
                header = header with { Features = header.Features & ~QedFeatures.NeedCheck };
                await WriteHeaderSectorAsync(_file, header, useAsync, cancellationToken).ConfigureAwait(false);
                await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
                SetHeader(header);
            }
            return (result, checker.FirstFailure);
        }
        finally
        {
            foreach (var gate in _tableGates)
            {
                gate.Exit();
            }
        }
    }

    // ---- reads ----

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected internal override async ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            var piece = await MapAsync(offset, destination.Length, useAsync, cancellationToken).ConfigureAwait(false);
            var part = destination[..(int)piece.Length];
            switch (piece.State)
            {
                case BlockState.Data:
                    await _file.ReadZeroPaddedAsync(part, piece.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
                    break;
                case BlockState.Zero:
                    part.Span.Clear();
                    break;
                default:
                    await ReadBackingAsync(part, offset, useAsync, cancellationToken).ConfigureAwait(false);
                    break;
            }
            offset += piece.Length;
            destination = destination[(int)piece.Length..];
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadBackingAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        var backing = _backing;
        long available = backing is null ? 0 : Math.Clamp(backing.Size - offset, 0, destination.Length);
        if (available > 0)
        {
            await backing!.ReadCoreAsync(destination[..(int)available], offset, useAsync, cancellationToken).ConfigureAwait(false);
        }
        destination.Span[(int)available..].Clear();
    }

    /// <inheritdoc />
    protected internal override async ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        var piece = await MapAsync(offset, length, useAsync, cancellationToken).ConfigureAwait(false);
        return new BlockStatus(offset, piece.Length, piece.State, piece.HostOffset);
    }

    /// <summary>Maps the longest run starting at <paramref name="offset"/> that has one state (and, for data, is contiguous in the file), at most <paramref name="length"/> bytes and never past the span of its L2 slice.</summary>
    private async ValueTask<Mapping> MapAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        int inCluster = _geometry.OffsetInCluster(offset);
        long pieceLength = Math.Min(length, RoomInSlice(offset));
        int l1Index = _geometry.L1Index(offset);
        ulong tableOffset = TableEntry.Read(_l1, l1Index);
        if (tableOffset == 0)
        {
            return new Mapping(BlockState.Unallocated, pieceLength, -1);
        }
        ValidateTableOffset(tableOffset, l1Index);

        var table = await GetSliceAsync(tableOffset, offset, useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            int first = IndexInSlice(offset);
            int wanted = (int)_geometry.ClustersFor(inCluster + pieceLength);
            ulong entry = table[first];
            int run = 1;
            if (entry is TableEntry.Unallocated or TableEntry.Zero)
            {
                while (run < wanted && table[first + run] == entry)
                {
                    run++;
                }
                var state = entry == TableEntry.Zero ? BlockState.Zero : BlockState.Unallocated;
                return new Mapping(state, Math.Min(pieceLength, ((long)run << _geometry.ClusterBits) - inCluster), -1);
            }

            ValidateDataOffset(entry, tableOffset, _geometry.L2Index(offset));
            while (run < wanted)
            {
                ulong next = table[first + run];
                // Unlike QEMU, every cluster of a run is validated, not just the first (QED-FORMAT.md §4.1).
                if (next != entry + ((ulong)run << _geometry.ClusterBits) || !IsValidDataOffset(next))
                {
                    break;
                }
                run++;
            }
            return new Mapping(BlockState.Data, Math.Min(pieceLength, ((long)run << _geometry.ClusterBits) - inCluster), (long)entry + inCluster);
        }
        finally
        {
            _cache.Release(table);
        }
    }

    /// <summary>Guest bytes from <paramref name="offset"/> to the end of the span mapped by its L2 slice.</summary>
    private long RoomInSlice(long offset)
    {
        long span = 1L << (_sliceShift + _geometry.ClusterBits);
        return span - (offset & (span - 1));
    }

    /// <summary>Index of the entry for <paramref name="offset"/> inside its slice.</summary>
    private int IndexInSlice(long offset) => _geometry.L2Index(offset) & ((1 << _sliceShift) - 1);

    /// <summary>File offset of the slice of the table at <paramref name="tableOffset"/> that maps <paramref name="offset"/>.</summary>
    private ulong SliceOffset(ulong tableOffset, long offset) => tableOffset + (ulong)((_geometry.L2Index(offset) >> _sliceShift) * _sliceBytes);

    private ValueTask<L2CacheEntry> GetSliceAsync(ulong tableOffset, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _cache.GetAsync(SliceOffset(tableOffset, offset), _sliceBytes, _loadTable, useAsync, cancellationToken);

    private ValueTask<L2CacheEntry> GetSliceAsync(ulong tableOffset, int sliceNumber, bool useAsync, CancellationToken cancellationToken) =>
        _cache.GetAsync(tableOffset + (ulong)sliceNumber * (ulong)_sliceBytes, _sliceBytes, _loadTable, useAsync, cancellationToken);

    /// <summary>Guest bytes from <paramref name="offset"/> to the end of the span its L2 table maps.</summary>
    private long RoomInTable(long offset) => _geometry.L2Span - (offset & (_geometry.L2Span - 1));

    private async ValueTask LoadTableAsync(L2CacheEntry entry, bool useAsync, CancellationToken cancellationToken) =>
        await _file.ReadZeroPaddedAsync(entry.Table, (long)entry.Offset, useAsync, cancellationToken).ConfigureAwait(false);

    private bool IsValidDataOffset(ulong offset) =>
        OffsetRules.IsValidCluster(offset, _geometry, _headerBytes, (ulong)Volatile.Read(ref _fileEnd));

    private void ValidateDataOffset(ulong entry, ulong tableOffset, int index)
    {
        if (!IsValidDataOffset(entry))
        {
            throw new QedCorruptionException($"Invalid argument: L2 table at 0x{tableOffset:x} entry {index} points to 0x{entry:x}, which is not a valid cluster offset in '{FileName}' (run 'qed check -r all')");
        }
    }

    private void ValidateTableOffset(ulong tableOffset, int l1Index)
    {
        if (!OffsetRules.IsValidTable(tableOffset, _geometry, _headerBytes, (ulong)Volatile.Read(ref _fileEnd)))
        {
            throw new QedCorruptionException($"Invalid argument: L1 entry {l1Index} points to 0x{tableOffset:x}, which is not a valid L2 table offset in '{FileName}' (run 'qed check -r all')");
        }
    }

    // ---- writes ----

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected internal override async ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        while (!source.IsEmpty)
        {
            var piece = await MapAsync(offset, source.Length, useAsync, cancellationToken).ConfigureAwait(false);
            int done;
            if (piece.State == BlockState.Data)
            {
                done = (int)piece.Length;
                await _file.WriteAsync(source[..done], piece.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                done = await AllocatingWriteAsync(source, offset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            offset += done;
            source = source[done..];
        }
    }

    /// <summary>Allocates the run of unallocated or zero clusters at <paramref name="offset"/> (up to the end of its L2 table, contiguous in the file as QEMU lays it out) and writes the payload into it; returns the bytes written, 0 when the cluster turned out to be allocated meanwhile.</summary>
    private async ValueTask<int> AllocatingWriteAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        var gate = TableGate(offset);
        await gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        var slices = new List<L2CacheEntry>(2);
        try
        {
            int inCluster = _geometry.OffsetInCluster(offset);
            long pieceLength = Math.Min(source.Length, RoomInTable(offset));
            int wanted = (int)_geometry.ClustersFor(inCluster + pieceLength);
            ulong tableOffset = ValidatedTableOffset(offset);
            var run = (Count: wanted, FirstState: TableEntry.Unallocated, LastState: TableEntry.Unallocated);
            if (tableOffset != 0)
            {
                run = await CollectRunAsync(tableOffset, offset, wanted, unallocatedOnly: false, slices, useAsync, cancellationToken).ConfigureAwait(false);
                if (run.Count == 0)
                {
                    return 0;
                }
            }

            int length = (int)Math.Min(pieceLength, ((long)run.Count << _geometry.ClusterBits) - inCluster);
            long clusters = Reserve((long)run.Count << _geometry.ClusterBits);
            await MarkNeedCheckAsync(useAsync, cancellationToken).ConfigureAwait(false);
            await WriteNewClustersAsync(clusters, offset, source[..length], run.Count, run.FirstState, run.LastState, useAsync, cancellationToken).ConfigureAwait(false);
            if (NamesBackingFile || clusters < Volatile.Read(ref _staleEnd))
            {
                await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
            }
            await SetEntriesAsync(tableOffset, slices, offset, run.Count, (ulong)clusters, (ulong)_geometry.ClusterSize, useAsync, cancellationToken).ConfigureAwait(false);
            return length;
        }
        finally
        {
            ReleaseAll(slices);
            gate.Exit();
        }
    }

    /// <summary>Writes <paramref name="count"/> new clusters at <paramref name="hostOffset"/>: the payload at its place and the rest of the first and last cluster copied up from beneath.</summary>
    private async ValueTask WriteNewClustersAsync(long hostOffset, long guestOffset, ReadOnlyMemory<byte> payload, int count, ulong firstState, ulong lastState, bool useAsync, CancellationToken cancellationToken)
    {
        int head = _geometry.OffsetInCluster(guestOffset);
        long total = (long)count << _geometry.ClusterBits;
        int tail = (int)(total - head - payload.Length);
        long guestStart = guestOffset - head;
        long guestTail = guestOffset + payload.Length;

        if (total <= CombinedWriteLimit)
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent((int)total);
            try
            {
                var whole = buffer.AsMemory(0, (int)total);
                await FillCopyUpAsync(whole[..head], guestStart, firstState, useAsync, cancellationToken).ConfigureAwait(false);
                payload.CopyTo(whole[head..]);
                await FillCopyUpAsync(whole[(head + payload.Length)..], guestTail, lastState, useAsync, cancellationToken).ConfigureAwait(false);
                await _file.WriteAsync(whole, hostOffset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            return;
        }

        await CopyUpAsync(hostOffset, head, guestStart, firstState, useAsync, cancellationToken).ConfigureAwait(false);
        await _file.WriteAsync(payload, hostOffset + head, useAsync, cancellationToken).ConfigureAwait(false);
        await CopyUpAsync(hostOffset + head + payload.Length, tail, guestTail, lastState, useAsync, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask CopyUpAsync(long hostOffset, int length, long guestOffset, ulong previousState, bool useAsync, CancellationToken cancellationToken)
    {
        if (length == 0)
        {
            return;
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var part = buffer.AsMemory(0, length);
            await FillCopyUpAsync(part, guestOffset, previousState, useAsync, cancellationToken).ConfigureAwait(false);
            await _file.WriteAsync(part, hostOffset, useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>What the untouched part of a newly allocated cluster must hold: zeros for a former zero cluster (the spec; QEMU copies backing data here, QED-FORMAT.md §5.5), else what the backing chain shows.</summary>
    private ValueTask FillCopyUpAsync(Memory<byte> destination, long guestOffset, ulong previousState, bool useAsync, CancellationToken cancellationToken)
    {
        if (destination.IsEmpty)
        {
            return ValueTask.CompletedTask;
        }
        if (previousState == TableEntry.Zero)
        {
            destination.Span.Clear();
            return ValueTask.CompletedTask;
        }
        if (_backing is null && NamesBackingFile)
        {
            // Opened without its backing chain: zeros here would silently replace the backing data.
            throw new QedException($"'{FileName}' was opened without its backing file: a partial write into an unallocated cluster cannot copy up the backing data");
        }
        return ReadBackingAsync(destination, guestOffset, useAsync, cancellationToken);
    }

    /// <inheritdoc />
    protected internal override async ValueTask WriteZeroesCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        while (length > 0)
        {
            int inCluster = _geometry.OffsetInCluster(offset);
            long done;
            if (inCluster != 0 || length < _geometry.ClusterSize)
            {
                // A partial cluster cannot become a zero cluster: write real zeros through the normal path.
                done = Math.Min(length, _geometry.ClusterSize - inCluster);
                await WriteZeroBytesAsync(offset, done, inPlaceHost: -1, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                var piece = await MapAsync(offset, length & ~_geometry.ClusterMask, useAsync, cancellationToken).ConfigureAwait(false);
                done = piece.Length;
                if (piece.State == BlockState.Data)
                {
                    // QEMU keeps allocated clusters allocated and writes zeros into them (QED-FORMAT.md §5.5).
                    await WriteZeroBytesAsync(offset, done, piece.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
                }
                else if (piece.State == BlockState.Unallocated && NamesBackingFile)
                {
                    done = await MarkZeroClustersAsync(offset, done, useAsync, cancellationToken).ConfigureAwait(false);
                }
                // Zero clusters already read as zeros, and so does unallocated space without a backing file.
            }
            offset += done;
            length -= done;
        }
    }

    private async ValueTask WriteZeroBytesAsync(long offset, long length, long inPlaceHost, bool useAsync, CancellationToken cancellationToken)
    {
        int chunk = (int)Math.Min(length, CombinedWriteLimit);
        byte[] zeros = ArrayPool<byte>.Shared.Rent(chunk);
        try
        {
            Array.Clear(zeros, 0, chunk);
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(chunk, length - done);
                if (inPlaceHost >= 0)
                {
                    await _file.WriteAsync(zeros.AsMemory(0, n), inPlaceHost + done, useAsync, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await WriteCoreAsync(zeros.AsMemory(0, n), offset + done, useAsync, cancellationToken).ConfigureAwait(false);
                }
                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    /// <summary>Turns the unallocated clusters of a whole-cluster range into zero clusters; returns the bytes handled.</summary>
    private async ValueTask<long> MarkZeroClustersAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        var gate = TableGate(offset);
        await gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        var slices = new List<L2CacheEntry>(2);
        try
        {
            int wanted = (int)(Math.Min(length, RoomInTable(offset)) >> _geometry.ClusterBits);
            ulong tableOffset = ValidatedTableOffset(offset);
            int count = wanted;
            if (tableOffset != 0)
            {
                count = (await CollectRunAsync(tableOffset, offset, wanted, unallocatedOnly: true, slices, useAsync, cancellationToken).ConfigureAwait(false)).Count;
                if (count == 0)
                {
                    // Allocated or zero meanwhile: let the caller look again.
                    return 0;
                }
            }
            await SetEntriesAsync(tableOffset, slices, offset, count, TableEntry.Zero, 0, useAsync, cancellationToken).ConfigureAwait(false);
            return (long)count << _geometry.ClusterBits;
        }
        finally
        {
            ReleaseAll(slices);
            gate.Exit();
        }
    }

    // ---- metadata updates (allocation lock held) ----

    /// <summary>The L1 entry for <paramref name="offset"/>: 0 when no L2 table exists, else a validated table offset.</summary>
    private ulong ValidatedTableOffset(long offset)
    {
        int l1Index = _geometry.L1Index(offset);
        ulong tableOffset = TableEntry.Read(_l1, l1Index);
        if (tableOffset != 0)
        {
            ValidateTableOffset(tableOffset, l1Index);
        }
        return tableOffset;
    }

    /// <summary>
    /// Counts the entries from the one mapping <paramref name="offset"/> that an allocation may take (unallocated or
    /// zero; only unallocated when <paramref name="unallocatedOnly"/>), at most <paramref name="wanted"/>, adding every
    /// slice it reads, in order and with a reference held, to <paramref name="slices"/>.
    /// </summary>
    private async ValueTask<(int Count, ulong FirstState, ulong LastState)> CollectRunAsync(ulong tableOffset, long offset, int wanted, bool unallocatedOnly, List<L2CacheEntry> slices, bool useAsync, CancellationToken cancellationToken)
    {
        int first = _geometry.L2Index(offset);
        int mask = (1 << _sliceShift) - 1;
        ulong firstState = TableEntry.Unallocated, lastState = TableEntry.Unallocated;
        int count = 0;
        while (count < wanted)
        {
            int index = first + count;
            int slice = (index >> _sliceShift) - (first >> _sliceShift);
            if (slice == slices.Count)
            {
                slices.Add(await GetSliceAsync(tableOffset, index >> _sliceShift, useAsync, cancellationToken).ConfigureAwait(false));
            }
            ulong entry = slices[slice][index & mask];
            if (entry != TableEntry.Unallocated && (unallocatedOnly || entry != TableEntry.Zero))
            {
                break;
            }
            firstState = count == 0 ? entry : firstState;
            lastState = entry;
            count++;
        }
        return (count, firstState, lastState);
    }

    private void ReleaseAll(List<L2CacheEntry> slices)
    {
        foreach (var slice in slices)
        {
            _cache.Release(slice);
        }
    }

    /// <summary>
    /// Sets the <paramref name="count"/> entries from the one mapping <paramref name="offset"/> to <c>value + i * step</c>:
    /// in the existing table at <paramref name="tableOffset"/>, whose slices covering the run are <paramref name="slices"/>,
    /// or, when <paramref name="tableOffset"/> is 0, in a new table.
    /// </summary>
    private async ValueTask SetEntriesAsync(ulong tableOffset, List<L2CacheEntry> slices, long offset, int count, ulong value, ulong step, bool useAsync, CancellationToken cancellationToken)
    {
        int first = _geometry.L2Index(offset);
        int firstSlice = first >> _sliceShift;
        int mask = (1 << _sliceShift) - 1;
        if (tableOffset != 0)
        {
            // Write the changed 512-byte blocks in one write, from a patched copy; memory changes once the disk did.
            // A block never spans two slices: slices are at least 512 bytes and aligned.
            int blockStart = first / TableEntry.EntriesPerBlock * TableEntry.EntriesPerBlock;
            int blockEnd = (first + count + TableEntry.EntriesPerBlock - 1) / TableEntry.EntriesPerBlock * TableEntry.EntriesPerBlock;
            int bytes = (blockEnd - blockStart) * sizeof(ulong);
            byte[] copy = ArrayPool<byte>.Shared.Rent(bytes);
            try
            {
                for (int block = blockStart; block < blockEnd; block += TableEntry.EntriesPerBlock)
                {
                    var slice = slices[(block >> _sliceShift) - firstSlice];
                    Buffer.BlockCopy(slice.Table, (block & mask) * sizeof(ulong), copy, (block - blockStart) * sizeof(ulong), TableEntry.EntriesPerBlock * sizeof(ulong));
                }
                for (int i = 0; i < count; i++)
                {
                    TableEntry.Write(copy, first - blockStart + i, value + (ulong)i * step);
                }
                await _file.WriteAsync(copy.AsMemory(0, bytes), (long)tableOffset + blockStart * sizeof(ulong), useAsync, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(copy);
            }
            for (int i = 0; i < count; i++)
            {
                int index = first + i;
                TableEntry.Write(slices[(index >> _sliceShift) - firstSlice].Table, index & mask, value + (ulong)i * step);
            }
            return;
        }

        long newTable = Reserve(_geometry.TableBytes);
        byte[] table = new byte[_geometry.TableBytes];
        for (int i = 0; i < count; i++)
        {
            TableEntry.Write(table, first + i, value + (ulong)i * step);
        }
        await _file.WriteAsync(table, newTable, useAsync, cancellationToken).ConfigureAwait(false);
        // The table must be stable before the L1 entry can point at it.
        await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        await _l1Gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            await UpdateTableBlocksAsync(_l1, (long)Header.L1TableOffset, _geometry.L1Index(offset), 1, (ulong)newTable, 0, useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _l1Gate.Exit();
        }

        // Publish the slices this request changed only once L1 reaches the table (§6.4): had the L1 write failed, a
        // published slice would outlive its leaked table and could shadow a later table at the same offset once a leak
        // repair moved the allocation pointer back. The other slices load from disk on demand.
        for (int slice = firstSlice; slice <= (first + count - 1) >> _sliceShift; slice++)
        {
            var created = new L2CacheEntry((ulong)newTable + (ulong)slice * (ulong)_sliceBytes, table.AsSpan(slice * _sliceBytes, _sliceBytes).ToArray()) { References = 1 };
            created.MarkReady();
            _cache.Release(_cache.Insert(created));
        }
    }

    /// <summary>Writes the 512-byte blocks of an in-memory table (the L1) that hold the changed entries, from a patched copy, then applies the change in memory.</summary>
    private async ValueTask UpdateTableBlocksAsync(byte[] table, long tableOffset, int first, int count, ulong value, ulong step, bool useAsync, CancellationToken cancellationToken)
    {
        int blockStart = first / TableEntry.EntriesPerBlock * TableEntry.EntriesPerBlock;
        int blockEnd = (first + count + TableEntry.EntriesPerBlock - 1) / TableEntry.EntriesPerBlock * TableEntry.EntriesPerBlock;
        int bytes = (blockEnd - blockStart) * sizeof(ulong);
        byte[] copy = ArrayPool<byte>.Shared.Rent(bytes);
        try
        {
            Buffer.BlockCopy(table, blockStart * sizeof(ulong), copy, 0, bytes);
            for (int i = 0; i < count; i++)
            {
                TableEntry.Write(copy, first - blockStart + i, value + (ulong)i * step);
            }
            await _file.WriteAsync(copy.AsMemory(0, bytes), tableOffset + blockStart * sizeof(ulong), useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
        for (int i = 0; i < count; i++)
        {
            TableEntry.Write(table, first + i, value + (ulong)i * step);
        }
    }

    /// <summary>Takes <paramref name="bytes"/> from the end of the file; the pointer never moves back, so a failed write only leaks.</summary>
    private long Reserve(long bytes)
    {
        long end = Interlocked.Add(ref _fileEnd, bytes);
        if (end < 0)
        {
            throw new QedException($"'{FileName}' cannot grow past {long.MaxValue} bytes");
        }
        return end - bytes;
    }

    private async ValueTask MarkNeedCheckAsync(bool useAsync, CancellationToken cancellationToken)
    {
        if (NamesBackingFile || Header.NeedsCheck)
        {
            return;
        }
        await _headerGate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            var header = Header;
            if (header.NeedsCheck)
            {
                return;
            }
            // Flushed before the first allocation (QEMU does not flush here: QED-FORMAT.md §5.6).
            header = header with { Features = header.Features | QedFeatures.NeedCheck };
            await WriteHeaderSectorAsync(_file, header, useAsync, cancellationToken).ConfigureAwait(false);
            await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
            SetHeader(header);
            _setNeedCheck = true;
        }
        finally
        {
            _headerGate.Exit();
        }
    }

    private void SetHeader(QedHeader header)
    {
        lock (_headerSync)
        {
            _header = header;
        }
    }

    /// <summary>Rewrites the first sector with the header patched in, keeping bytes 64..511 as QEMU does.</summary>
    private static async ValueTask WriteHeaderSectorAsync(FileAccessor file, QedHeader header, bool useAsync, CancellationToken cancellationToken)
    {
        byte[] sector = new byte[HeaderLayout.SectorSize];
        await file.ReadZeroPaddedAsync(sector, 0, useAsync, cancellationToken).ConfigureAwait(false);
        header.WriteTo(sector);
        await file.WriteAsync(sector, 0, useAsync, cancellationToken).ConfigureAwait(false);
    }

    private AsyncGate TableGate(long offset) => _tableGates[_geometry.L1Index(offset) & (TableGateStripes - 1)];

    // ---- flush and close ----

    /// <inheritdoc />
    protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) =>
        IsReadOnly ? ValueTask.CompletedTask : _file.FlushAsync(useAsync, cancellationToken);

    /// <inheritdoc />
    protected override async ValueTask CloseCoreAsync(bool useAsync)
    {
        try
        {
            if (!IsReadOnly)
            {
                await _file.FlushAsync(useAsync, CancellationToken.None).ConfigureAwait(false);
                var header = Header;
                if (_setNeedCheck && header.NeedsCheck)
                {
                    // Everything this session wrote is stable: the metadata is consistent again.
                    header = header with { Features = header.Features & ~QedFeatures.NeedCheck };
                    await WriteHeaderSectorAsync(_file, header, useAsync, CancellationToken.None).ConfigureAwait(false);
                    await _file.FlushAsync(useAsync, CancellationToken.None).ConfigureAwait(false);
                    SetHeader(header);
                }
            }
        }
        finally
        {
            if (_backing is not null && useAsync)
            {
                await _backing.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                _backing?.Dispose();
            }
            _file.Dispose();
            foreach (var gate in _tableGates)
            {
                gate.Dispose();
            }
            _l1Gate.Dispose();
            _headerGate.Dispose();
        }
    }

    private readonly record struct Mapping(BlockState State, long Length, long HostOffset);
}
