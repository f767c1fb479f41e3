using System.Buffers.Binary;
using System.Globalization;
using Qed.Check;
using Qed.IO;

namespace Qed.Formats.Qcow2.Check;

/// <summary>
/// The read-only consistency check of a qcow2 image (QCOW2.md §13), with qemu-img check's counters and messages.
/// </summary>
/// <remarks>
/// Algorithm (QEMU 7.2's order, which is also the order of the messages):
/// <list type="number">
/// <item>Read the snapshot table (<see cref="Qcow2CheckSnapshots"/>); a table that cannot be read stops the check.</item>
/// <item>Count references per host cluster in memory (<see cref="Qcow2ReferenceCounts"/>): cluster 0; the active L1
/// table, its L2 tables and their data clusters (NORMAL and ZERO_ALLOC: one cluster; COMPRESSED: every cluster its byte
/// span touches), with the allocation statistics; each snapshot's L1 table, L2 tables and data; the snapshot table; the
/// refcount table; the LUKS area; the bitmaps; the refcount blocks (each must end up referenced exactly once). A range
/// reaching one cluster or more past the end of the file is one corruption and is not counted.</item>
/// <item>Compare with the stored refcounts (<see cref="Qcow2RefcountReader"/>) for every cluster of the file (grown to
/// the highest one counted): stored below computed is a corruption, above is a leak. The highest cluster in use by
/// either gives the image end offset.</item>
/// <item>On the active L1 and its L2 tables, the COPIED flag must be set exactly where the stored refcount is 1.</item>
/// </list>
/// Nothing is written. Memory follows the clusters referenced; no count read from disk sizes an allocation before it
/// passed QEMU's limit (the header passed rules 1-23, the snapshot table is bounded by its reader).
/// </remarks>
internal sealed class Qcow2Checker
{
    private const ulong TableOffsetMask = 0x00FF_FFFF_FFFF_FE00;
    private const ulong L1ReservedMask = 0x7F00_0000_0000_01FF;
    private const ulong L2ReservedMask = 0x3F00_0000_0000_01FE;
    private const ulong CopiedFlag = 1UL << 63;
    private const ulong CompressedFlag = 1UL << 62;
    private const ulong ZeroFlag = 1;
    private const ulong SubclustersAllocated = 0xFFFF_FFFF;
    private const ulong RefcountTableReservedMask = 0x1FF;
    private const long MaxL1Entries = 32L * 1024 * 1024 / 8;
    private const int CompressedSectorSize = 512;

    private readonly FileAccessor _file;
    private readonly Qcow2Header _header;
    private readonly Qcow2CheckLayout _layout;
    private readonly long _fileLength;
    private readonly int _clusterBits;
    private readonly long _clusterSize;
    private readonly bool _subclusters;
    private readonly List<CheckMessage> _log = [];
    private readonly Action<CheckMessage> _report;
    private readonly Qcow2ReferenceCounts _references;
    private Qcow2RefcountReader? _refcounts;
    private long _corruptions;
    private long _leaks;
    private long _checkErrors;
    private long _allocated;
    private long _fragmented;
    private long _compressed;
    // QEMU prints its corruption notice once, when a lookup first meets the bad block.
    private bool _noticeReported;
    private long _lastBlockIndex = -1;
    private byte[]? _lastBlock;

    private Qcow2Checker(FileAccessor file, Qcow2Header header, Qcow2CheckLayout layout, long fileLength, Action<CheckMessage>? report)
    {
        _report = report ?? _log.Add;
        _file = file;
        _header = header;
        _layout = layout;
        _fileLength = fileLength;
        _clusterBits = (int)header.ClusterBits;
        _clusterSize = header.ClusterSize;
        _subclusters = header.ExtendedL2;
        _references = new Qcow2ReferenceCounts(ClustersOf(fileLength), header.RefcountBits);
    }

    /// <summary>
    /// Checks the image in <paramref name="file"/>, whose <paramref name="header"/> passed <see cref="Qcow2Header.Validate"/>
    /// for a check. <paramref name="report"/> receives each message as it is found (a damaged image can yield millions);
    /// when it is null they are collected in <see cref="CheckResult.Messages"/>.
    /// </summary>
    /// <exception cref="IOException">The file could not be read.</exception>
    public static async ValueTask<CheckResult> CheckAsync(FileAccessor file, Qcow2Header header, Qcow2CheckLayout layout, Action<CheckMessage>? report, bool useAsync, CancellationToken cancellationToken)
    {
        long fileLength = file.GetLength();
        var checker = new Qcow2Checker(file, header, layout, fileLength, report);
        string? abortReason = null;
        try
        {
            await checker.RunAsync(useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch (CheckAbortedException e)
        {
            abortReason = e.Reason;
        }
        return checker.Result(abortReason);
    }

    private CheckResult Result(string? abortReason) => new()
    {
        // QEMU counts whole sectors of the virtual size (a size that is not a multiple of 512 is rounded down).
        TotalClusters = ClustersOf((long)(_header.Size / 512 * 512)),
        AllocatedClusters = _allocated,
        FragmentedClusters = _fragmented,
        CompressedClusters = _compressed,
        Corruptions = _corruptions,
        Leaks = _leaks,
        CheckErrors = _checkErrors,
        ImageEndOffset = ImageEndOffset,
        Messages = _log,
        AbortReason = abortReason,
    };

    private long ImageEndOffset { get; set; }

    private async ValueTask RunAsync(bool useAsync, CancellationToken cancellationToken)
    {
        if (_layout.BitmapsInconsistent)
        {
            // QEMU's warning at open, before the check begins; its second sentence ends without a newline.
            _report(new(CheckMessageKind.Warning, _header.Version < 3
                ? "This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent"
                : "a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent"));
            _report(new(CheckMessageKind.Unterminated, "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix."));
        }
        var snapshots = await Qcow2CheckSnapshots.ReadAsync(_file, _header, _fileLength, _report, useAsync, cancellationToken).ConfigureAwait(false);
        _corruptions += snapshots.Corruptions;
        _checkErrors += snapshots.CheckErrors;
        if (snapshots.AbortReason is { } reason)
        {
            throw new CheckAbortedException(reason);
        }

        if (_references.Length > int.MaxValue)
        {
            _checkErrors++;
            throw new CheckAbortedException(Errno.FileTooLarge);
        }
        _refcounts = await Qcow2RefcountReader.LoadAsync(_file, _header, _fileLength, useAsync, cancellationToken).ConfigureAwait(false);

        Count(0, _clusterSize);
        ulong[] activeL1 = await CheckL1Async(_header.L1TableOffset, _header.L1Size, active: true, useAsync, cancellationToken).ConfigureAwait(false);

        if (_layout.HasDataFile && _header.SnapshotCount != 0)
        {
            Report(string.Create(CultureInfo.InvariantCulture, $"ERROR {_header.SnapshotCount} snapshots in image with data file"));
            _corruptions++;
        }
        foreach (var snapshot in snapshots.Snapshots)
        {
            if (snapshot.L1Offset % (ulong)_clusterSize != 0)
            {
                Report($"ERROR snapshot {snapshot.Id} ({snapshot.Name}) l1_offset={AlternateHex(snapshot.L1Offset)}: L1 table is not cluster aligned; snapshot table entry corrupted");
                _corruptions++;
                continue;
            }
            if (snapshot.L1Size > MaxL1Entries)
            {
                Report($"ERROR snapshot {snapshot.Id} ({snapshot.Name}) l1_size={AlternateHex(snapshot.L1Size)}: L1 table is too large; snapshot table entry corrupted");
                _corruptions++;
                continue;
            }
            await CheckL1Async(snapshot.L1Offset, snapshot.L1Size, active: false, useAsync, cancellationToken).ConfigureAwait(false);
        }
        Count(_header.SnapshotsOffset, snapshots.TableSize);
        Count(_header.RefcountTableOffset, _refcounts.Table.Length * 8L);
        if (_layout.CryptoLength != 0)
        {
            Count(_layout.CryptoOffset, (long)Math.Min(_layout.CryptoLength, long.MaxValue));
        }
        await Qcow2CheckBitmaps.CountAsync(this, useAsync, cancellationToken).ConfigureAwait(false);
        CheckRefcountBlocks();

        await CompareAsync(useAsync, cancellationToken).ConfigureAwait(false);
        await CheckCopiedFlagsAsync(activeL1, useAsync, cancellationToken).ConfigureAwait(false);
    }

    // ---- what the bitmap pass uses ----

    internal FileAccessor File => _file;

    internal long FileLength => _fileLength;

    internal long ClusterSize => _clusterSize;

    internal Qcow2CheckLayout Layout => _layout;

    internal ulong VirtualSize => _header.Size;

    internal void AddCorruption() => _corruptions++;

    /// <summary>Stops the check: qemu-img prints the messages so far and <c>Check failed: REASON</c>.</summary>
    internal static CheckAbortedException Abort(string reason) => new(reason);

    /// <summary>
    /// Adds one reference to every cluster of [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="size"/>)
    /// (QEMU's <c>inc_refcounts</c>): a range reaching one cluster or more past the end of the file is a corruption and
    /// counts nothing; a count at the refcount maximum is a corruption (overflow).
    /// </summary>
    internal void Count(ulong offset, long size)
    {
        if (size <= 0)
        {
            return;
        }
        if (offset > long.MaxValue)
        {
            // QEMU computes in signed 64 bits: such an offset passes the end-of-file test, then its table cannot grow that far.
            _checkErrors++;
            throw new CheckAbortedException("Cannot allocate memory");
        }
        if ((Int128)offset + size - _fileLength >= _clusterSize)
        {
            Report(string.Create(CultureInfo.InvariantCulture,
                $"ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x{offset:x} size 0x{size:x}"));
            _corruptions++;
            return;
        }
        long first = (long)offset >> _clusterBits;
        long last = ((long)offset + size - 1) >> _clusterBits;
        for (long cluster = first; cluster <= last; cluster++)
        {
            if (!_references.Increment(cluster))
            {
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR: overflow cluster offset=0x{cluster << _clusterBits:x}"));
                Report("Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing");
                _corruptions++;
            }
        }
    }

    // ---- the tables ----

    /// <summary>Counts an L1 table, its L2 tables and their clusters; returns the table's entries.</summary>
    private async ValueTask<ulong[]> CheckL1Async(ulong offset, uint entries, bool active, bool useAsync, CancellationToken cancellationToken)
    {
        if (entries == 0)
        {
            return [];
        }
        long bytes = entries * 8L;
        Count(offset, bytes);
        if (offset > (ulong)(long.MaxValue - bytes))
        {
            Report("ERROR: I/O error in check_refcounts_l1");
            _checkErrors++;
            throw new CheckAbortedException(Errno.InputOutput);
        }
        // Entries past the end of the file read as zeros and name nothing: only those inside are read and walked (a
        // hostile table of 4 Mi entries far past the end then costs nothing, per snapshot too).
        long inFile = (long)offset >= _fileLength ? 0 : Math.Min(entries, (_fileLength - (long)offset + 7) / 8);
        byte[] raw = new byte[inFile * 8];
        await ReadAsync(raw, (long)offset, "check_refcounts_l1", useAsync, cancellationToken).ConfigureAwait(false);
        var l1 = new ulong[inFile];
        for (int i = 0; i < l1.Length; i++)
        {
            l1[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        }

        byte[] table = new byte[_clusterSize];
        for (int i = 0; i < l1.Length; i++)
        {
            ulong entry = l1[i];
            if (entry == 0)
            {
                continue;
            }
            if ((entry & L1ReservedMask) != 0)
            {
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR found L1 entry with reserved bits set: {entry:x}"));
                _corruptions++;
            }
            ulong l2Offset = entry & TableOffsetMask;
            Count(l2Offset, _clusterSize);
            if (!IsClusterAligned(l2Offset))
            {
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR l2_offset={l2Offset:x}: Table is not cluster aligned; L1 entry corrupted"));
                _corruptions++;
            }
            // A table past the end of the file reads as zeros, which name nothing: skip it (hostile L1s cost no walk).
            if ((long)l2Offset >= _fileLength)
            {
                continue;
            }
            // QEMU reads the table where the entry says, aligned or not.
            await ReadAsync(table, (long)l2Offset, "check_refcounts_l2", useAsync, cancellationToken).ConfigureAwait(false);
            CheckL2(table, active);
        }
        return l1;
    }

    private void CheckL2(byte[] table, bool statistics)
    {
        int entrySize = _header.L2EntrySize;
        int entries = (int)(_clusterSize / entrySize);
        ulong nextContiguous = 0;
        for (int i = 0; i < entries; i++)
        {
            ulong entry = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * entrySize));
            ulong bitmap = _subclusters ? BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * entrySize + 8)) : 0;
            var type = TypeOf(entry);
            if (type != ClusterType.Compressed && (entry & L2ReservedMask) != 0)
            {
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR found l2 entry with reserved bits set: {entry:x}"));
                _corruptions++;
            }
            switch (type)
            {
                case ClusterType.Compressed:
                    CheckCompressed(i, entry, bitmap, statistics);
                    break;
                case ClusterType.Normal or ClusterType.ZeroAllocated:
                {
                    ulong offset = entry & TableOffsetMask;
                    if (((bitmap >> 32) & bitmap) != 0)
                    {
                        _corruptions++;
                        Report(string.Create(CultureInfo.InvariantCulture, $"ERROR offset={offset:x}: Allocated cluster has corrupted subcluster allocation bitmap"));
                    }
                    if (!IsClusterAligned(offset))
                    {
                        _corruptions++;
                        bool holdsData = _subclusters ? (bitmap & SubclustersAllocated) != 0 : (entry & ZeroFlag) == 0;
                        Report(string.Create(CultureInfo.InvariantCulture,
                            $"ERROR offset={offset:x}: {(holdsData ? "Data" : "Preallocated")} cluster is not properly aligned; L2 entry corrupted."));
                    }
                    if (statistics)
                    {
                        _allocated++;
                        if (nextContiguous != 0 && offset != nextContiguous)
                        {
                            _fragmented++;
                        }
                        nextContiguous = offset + (ulong)_clusterSize;
                    }
                    if (!_layout.HasDataFile)
                    {
                        Count(offset, _clusterSize);
                    }
                    break;
                }
                case ClusterType.Unallocated:
                    if ((bitmap & SubclustersAllocated) != 0)
                    {
                        _corruptions++;
                        Report("ERROR: Unallocated cluster has non-zero subcluster allocation map");
                    }
                    break;
            }
        }
    }

    private void CheckCompressed(int index, ulong entry, ulong bitmap, bool statistics)
    {
        // The descriptor (QCOW2.md §5.5): byte offset in the low 70 - cb bits, then the count of additional sectors.
        int split = 70 - _clusterBits;
        ulong offsetMask = (1UL << split) - 1;
        if ((entry & CopiedFlag) != 0)
        {
            Report(string.Create(CultureInfo.InvariantCulture, $"ERROR: coffset=0x{entry & offsetMask:x}: copied flag must never be set for compressed clusters"));
            entry &= ~CopiedFlag;
            _corruptions++;
        }
        if (_layout.HasDataFile)
        {
            Report(string.Create(CultureInfo.InvariantCulture, $"ERROR compressed cluster {index} with data file, entry=0x{entry:x}"));
            _corruptions++;
            return;
        }
        if (bitmap != 0)
        {
            Report(string.Create(CultureInfo.InvariantCulture, $"ERROR compressed cluster {index} with non-zero subcluster allocation bitmap, entry=0x{entry:x}"));
            _corruptions++;
            return;
        }
        ulong offset = entry & offsetMask;
        long sectors = (long)((entry >> split) & ((1UL << (_clusterBits - 8)) - 1)) + 1;
        long length = sectors * CompressedSectorSize - (long)(offset & (CompressedSectorSize - 1));
        Count(offset, length);
        if (statistics)
        {
            _allocated++;
            _compressed++;
            // Compressed clusters count as fragmented by nature (QEMU rereads shared sectors).
            _fragmented++;
        }
    }

    /// <summary>Each refcount block must be valid, inside the file and referenced once (by the table).</summary>
    private void CheckRefcountBlocks()
    {
        var table = _refcounts!.Table;
        for (int i = 0; i < table.Length; i++)
        {
            ulong offset = table[i] & Qcow2RefcountReader.TableOffsetMask;
            long cluster = (long)(offset >> _clusterBits);
            if ((table[i] & RefcountTableReservedMask) != 0)
            {
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR refcount table entry {i} has reserved bits set"));
                _corruptions++;
                continue;
            }
            if (!IsClusterAligned(offset))
            {
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted"));
                _corruptions++;
                continue;
            }
            if ((ulong)cluster >= (ulong)_references.Length)
            {
                _corruptions++;
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR refcount block {i} is outside image"));
                continue;
            }
            if (offset != 0)
            {
                Count(offset, _clusterSize);
                uint count = _references.Get(cluster);
                if (count != 1)
                {
                    Report(string.Create(CultureInfo.InvariantCulture, $"ERROR refcount block {i} refcount={count}"));
                    _corruptions++;
                }
            }
        }
    }

    // ---- comparison with the stored refcounts ----

    private async ValueTask CompareAsync(bool useAsync, CancellationToken cancellationToken)
    {
        var refcounts = _refcounts!;
        int blockBits = refcounts.BlockBits;
        int order = (int)_header.RefcountOrder;
        long length = _references.Length;
        long highest = 0;
        for (long start = 0; start < length;)
        {
            long blockIndex = start >> blockBits;
            long end = Math.Min(length, (blockIndex + 1) << blockBits);
            byte[]? block = null;
            bool empty = blockIndex >= refcounts.Table.Length || (refcounts.Table[(int)blockIndex] & Qcow2RefcountReader.TableOffsetMask) == 0;
            if (!empty)
            {
                block = await refcounts.GetBlockAsync(blockIndex, useAsync, cancellationToken).ConfigureAwait(false);
                if (block is null)
                {
                    ReportCorruptionNotice();
                    for (long cluster = start; cluster < end; cluster++)
                    {
                        Report(string.Create(CultureInfo.InvariantCulture, $"Can't get refcount for cluster {cluster}: {Errno.InputOutput}"));
                        _checkErrors++;
                    }
                    start = end;
                    continue;
                }
            }
            long blockBase = blockIndex << blockBits;
            for (long cluster = start; cluster < end;)
            {
                uint[]? page = _references.Page(cluster);
                long pageEnd = Math.Min(end, (cluster & ~(long)(Qcow2ReferenceCounts.PageClusters - 1)) + Qcow2ReferenceCounts.PageClusters);
                if (page is null && block is null)
                {
                    cluster = pageEnd;
                    continue;
                }
                for (; cluster < pageEnd; cluster++)
                {
                    ulong stored = block is null ? 0 : Qcow2RefcountReader.Decode(block, cluster - blockBase, order);
                    ulong computed = page is null ? 0 : page[cluster & (Qcow2ReferenceCounts.PageClusters - 1)];
                    if (stored == 0 && computed == 0)
                    {
                        continue;
                    }
                    highest = cluster;
                    if (stored < computed)
                    {
                        Report(string.Create(CultureInfo.InvariantCulture, $"ERROR cluster {cluster} refcount={stored} reference={computed}"));
                        _corruptions++;
                    }
                    else if (stored > computed)
                    {
                        Report(string.Create(CultureInfo.InvariantCulture, $"Leaked cluster {cluster} refcount={stored} reference={computed}"));
                        _leaks++;
                    }
                }
            }
            start = end;
        }
        ImageEndOffset = (highest + 1) * _clusterSize;
    }

    /// <summary>COPIED must be set on the active L1 and L2 entries exactly where the stored refcount is 1.</summary>
    private async ValueTask CheckCopiedFlagsAsync(ulong[] l1, bool useAsync, CancellationToken cancellationToken)
    {
        byte[] table = new byte[_clusterSize];
        int entrySize = _header.L2EntrySize;
        int entries = (int)(_clusterSize / entrySize);
        for (int i = 0; i < l1.Length; i++)
        {
            ulong l1Entry = l1[i];
            ulong l2Offset = l1Entry & TableOffsetMask;
            if (l2Offset == 0)
            {
                continue;
            }
            // A failed lookup is skipped silently, as in QEMU.
            ulong? refcount = await StoredRefcountAsync((long)(l2Offset >> _clusterBits), useAsync, cancellationToken).ConfigureAwait(false);
            if (refcount is null)
            {
                continue;
            }
            if ((refcount == 1) != ((l1Entry & CopiedFlag) != 0))
            {
                _corruptions++;
                Report(string.Create(CultureInfo.InvariantCulture, $"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1Entry:x} refcount={refcount}"));
            }
            if ((long)l2Offset >= _fileLength)
            {
                continue;
            }
            await ReadAsync(table, (long)l2Offset, null, useAsync, cancellationToken).ConfigureAwait(false);
            for (int j = 0; j < entries; j++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(j * entrySize));
                if (TypeOf(entry) is not (ClusterType.Normal or ClusterType.ZeroAllocated))
                {
                    continue;
                }
                ulong? dataRefcount = _layout.HasDataFile
                    ? 1
                    : await StoredRefcountAsync((long)((entry & TableOffsetMask) >> _clusterBits), useAsync, cancellationToken).ConfigureAwait(false);
                if (dataRefcount is null)
                {
                    continue;
                }
                if ((dataRefcount == 1) != ((entry & CopiedFlag) != 0))
                {
                    _corruptions++;
                    Report(string.Create(CultureInfo.InvariantCulture, $"ERROR OFLAG_COPIED data cluster: l2_entry={entry:x} refcount={dataRefcount}"));
                }
            }
        }
    }

    private ValueTask<ulong?> StoredRefcountAsync(long cluster, bool useAsync, CancellationToken cancellationToken)
    {
        // Data clusters come in runs under one block: decode from the last block without a lookup.
        var refcounts = _refcounts!;
        long index = cluster >> refcounts.BlockBits;
        if (index == _lastBlockIndex && _lastBlock is { } block)
        {
            return new((ulong?)Qcow2RefcountReader.Decode(block, cluster & ((1L << refcounts.BlockBits) - 1), (int)_header.RefcountOrder));
        }
        return LookUpAsync(cluster, index, useAsync, cancellationToken);
    }

    private async ValueTask<ulong?> LookUpAsync(long cluster, long index, bool useAsync, CancellationToken cancellationToken)
    {
        var refcounts = _refcounts!;
        if (index >= refcounts.Table.Length)
        {
            return 0;
        }
        byte[]? block = await refcounts.GetBlockAsync(index, useAsync, cancellationToken).ConfigureAwait(false);
        if (block is null)
        {
            ReportCorruptionNotice();
            return null;
        }
        _lastBlockIndex = index;
        _lastBlock = block;
        return Qcow2RefcountReader.Decode(block, cluster & ((1L << refcounts.BlockBits) - 1), (int)_header.RefcountOrder);
    }

    private void ReportCorruptionNotice()
    {
        if (!_noticeReported && _refcounts!.CorruptionReport is { } notice)
        {
            Report(notice);
            _noticeReported = true;
        }
    }

    // ---- helpers ----

    private enum ClusterType
    {
        Unallocated,
        ZeroPlain,
        ZeroAllocated,
        Normal,
        Compressed,
    }

    /// <summary>QEMU's classification of an L2 entry (QCOW2.md §5.3); the ZERO flag counts on version 2 images too, and is reserved with subclusters.</summary>
    private ClusterType TypeOf(ulong entry)
    {
        if ((entry & CompressedFlag) != 0)
        {
            return ClusterType.Compressed;
        }
        if ((entry & ZeroFlag) != 0 && !_subclusters)
        {
            return (entry & TableOffsetMask) != 0 ? ClusterType.ZeroAllocated : ClusterType.ZeroPlain;
        }
        if ((entry & TableOffsetMask) == 0)
        {
            // With a data file, offset 0 is a real cluster when COPIED says it is in use.
            return _layout.HasDataFile && (entry & CopiedFlag) != 0 ? ClusterType.Normal : ClusterType.Unallocated;
        }
        return ClusterType.Normal;
    }

    private bool IsClusterAligned(ulong offset) => (offset & (ulong)(_clusterSize - 1)) == 0;

    private long ClustersOf(long bytes) => (long)(((ulong)bytes + (ulong)_clusterSize - 1) >> _clusterBits);

    private void Report(string text) => _report(new CheckMessage(CheckMessageKind.Plain, text));

    /// <summary>Reads a table, zeros past the end of the file; a failed read stops the check as in QEMU (<paramref name="where"/> names QEMU's function for its message).</summary>
    private async ValueTask ReadAsync(byte[] buffer, long offset, string? where, bool useAsync, CancellationToken cancellationToken)
    {
        try
        {
            await Qcow2RefcountReader.ReadAsync(_file, buffer, offset, _fileLength, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            Report(where is null ? $"ERROR: Could not read L2 table: {e.Message}" : $"ERROR: I/O error in {where}");
            _checkErrors++;
            throw new CheckAbortedException(Errno.InputOutput);
        }
    }

    /// <summary>C's <c>%#x</c>: <c>0</c> for zero, <c>0x...</c> otherwise.</summary>
    private static string AlternateHex(ulong value) => value == 0 ? "0" : string.Create(CultureInfo.InvariantCulture, $"0x{value:x}");

    /// <summary>Thrown inside the check when QEMU's check would return an error: no report, only <c>Check failed: REASON</c>.</summary>
    internal sealed class CheckAbortedException(string reason) : Exception(reason)
    {
        public string Reason { get; } = reason;
    }
}
