using System.Security.Cryptography;

namespace Qed.Tests.PowerCut;

/// <summary>
/// Builds, from the log of one image session, the files a power cut could leave on disk.
/// </summary>
/// <remarks>
/// The model of the disk and file system (what a crash may do, and nothing more):
/// <list type="number">
/// <item>A completed flush makes every operation logged before it durable. The operations between two completed flushes
/// (an epoch) reach the disk in any subset and any order; so two writes to one sector may land in either order.</item>
/// <item>A 512-byte sector is written atomically; a longer write may be torn: any subset of its sectors lands.</item>
/// <item>The file length after a crash is one the file had at some moment since the last completed flush: the synced
/// length, the length after any later operation, or, during an extending write, any sector boundary of it (file systems
/// grow the size page by page). Bytes past that length are lost; bytes below it that no landed write covered read
/// as zeros (file systems do not expose stale blocks).</item>
/// <item>Length changes (truncates) are ordered by the file system's own journal: a truncate that landed cuts the
/// synced bytes and the writes issued before it, never a write issued after it. A truncate that did not land cuts
/// nothing. (Whether it landed is tied to the chosen length: it did when the length was chosen after it.)</item>
/// </list>
/// This is a superset of what ext4 (data=ordered) or XFS leave, so a state that passes here passes there. The states
/// built are: every prefix of the log applied in order; every prefix plus a torn part of the next write; and, per
/// epoch, random subsets of its writes, some torn, in random order, with a random length from the model above.
/// </remarks>
internal sealed class CrashStateGenerator
{
    public const int SectorSize = 512;

    private readonly IReadOnlyList<FileOp> _log;
    private readonly List<(int Index, FileContent Content)> _snapshots = [];
    private readonly long[] _lengthAfter;
    private readonly List<(int Start, int End)> _epochs = [];

    public CrashStateGenerator(byte[] initial, IReadOnlyList<FileOp> log)
    {
        _log = log;
        _lengthAfter = new long[log.Count + 1];
        var content = new FileContent(initial);
        _lengthAfter[0] = content.Length;
        _snapshots.Add((0, content.Clone()));
        long replayed = 0;
        int epochStart = 0;
        for (int i = 0; i < log.Count; i++)
        {
            content.Apply(log[i]);
            _lengthAfter[i + 1] = content.Length;
            replayed += log[i].Data.Length;
            if (log[i].Kind == FileOpKind.Flush)
            {
                if (i > epochStart)
                {
                    _epochs.Add((epochStart, i));
                }
                epochStart = i + 1;
                // Keep a copy at some epoch starts, so that rebuilding a state replays at most about one file's worth.
                if (replayed >= content.Length)
                {
                    _snapshots.Add((i + 1, content.Clone()));
                    replayed = 0;
                }
            }
        }
        if (log.Count > epochStart)
        {
            _epochs.Add((epochStart, log.Count));
        }
    }

    public IReadOnlyList<FileOp> Log => _log;

    /// <summary>The epochs that hold at least one operation: <c>[Start, End)</c>, where Start follows a completed flush (or is 0) and End is the next flush (or the end of the log).</summary>
    public IReadOnlyList<(int Start, int End)> Epochs => _epochs;

    /// <summary>Every prefix of the log, applied in order: the crash happened right after operation <c>i - 1</c> and everything before it landed.</summary>
    public IEnumerable<CrashRecipe> Prefixes()
    {
        for (int i = 0; i <= _log.Count; i++)
        {
            yield return new CrashRecipe { Kind = "prefix", InOrder = i, Writes = [], Truncates = [], Length = _lengthAfter[i], Durable = i, Visible = i };
        }
    }

    /// <summary>For every write of more than one sector: the prefix before it and a random part of it (at least one sector landed, at least one did not).</summary>
    public IEnumerable<CrashRecipe> TornPrefixes(Random random)
    {
        for (int i = 0; i < _log.Count; i++)
        {
            var op = _log[i];
            int sectors = SectorCount(op);
            if (op.Kind != FileOpKind.Write || sectors < 2)
            {
                continue;
            }
            bool[] landed = RandomSectors(random, sectors);
            landed[random.Next(sectors)] = true;
            int dropped = random.Next(sectors);
            landed[dropped] = false;
            if (!landed.Contains(true))
            {
                landed[(dropped + 1) % sectors] = true;
            }
            long length = ChooseLengthDuring(random, op, _lengthAfter[i]);
            yield return new CrashRecipe { Kind = "torn", InOrder = i, Writes = [new PersistedWrite(i, landed)], Truncates = [], Length = length, Durable = i, Visible = i + 1 };
        }
    }

    /// <summary>A random crash state inside epoch <paramref name="epoch"/>: the synced state, then a random subset of the epoch's writes, some torn, in random order, and a length the file had meanwhile.</summary>
    public CrashRecipe Reordered(int epoch, Random random)
    {
        var (start, end) = _epochs[epoch];
        int count = end - start;

        // The length: pick the operation the crash interrupted, then where in it.
        int cut = random.Next(count + 1);
        long length = _lengthAfter[start + cut];
        if (cut < count)
        {
            var op = _log[start + cut];
            length = op.Kind switch
            {
                FileOpKind.Write => ChooseLengthDuring(random, op, length),
                FileOpKind.SetLength when random.Next(2) == 0 => op.Length,
                _ => length,
            };
            if (op.Kind == FileOpKind.SetLength && length == op.Length)
            {
                cut++;
            }
        }
        var truncates = new List<int>();
        for (int i = start; i < start + cut; i++)
        {
            if (_log[i].Kind == FileOpKind.SetLength)
            {
                truncates.Add(i);
            }
        }

        double include = random.Next(4) switch { 0 => 0.25, 1 => 0.5, 2 => 0.8, _ => 1.0 };
        double tear = random.Next(3) switch { 0 => 0.0, 1 => 0.25, _ => 0.5 };
        var writes = new List<PersistedWrite>();
        for (int i = start; i < end; i++)
        {
            var op = _log[i];
            if (op.Kind != FileOpKind.Write || random.NextDouble() >= include)
            {
                continue;
            }
            int sectors = SectorCount(op);
            writes.Add(new PersistedWrite(i, sectors > 1 && random.NextDouble() < tear ? RandomSectors(random, sectors) : null));
        }
        // Any order: of two landed writes to one sector, either may have landed last.
        for (int i = writes.Count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (writes[i], writes[j]) = (writes[j], writes[i]);
        }
        return new CrashRecipe { Kind = "reordered", InOrder = start, Writes = writes, Truncates = truncates, Length = length, Durable = start, Visible = end };
    }

    /// <summary>
    /// Every subset of the writes of every epoch with at most <paramref name="maxWrites"/> writes (applied in log order), with
    /// every length the file had during that epoch at an operation boundary: all untorn crash states, for small sessions.
    /// </summary>
    public IEnumerable<CrashRecipe> Exhaustive(int maxWrites = 10)
    {
        foreach (var (start, end) in _epochs)
        {
            var writes = Enumerable.Range(start, end - start).Where(i => _log[i].Kind == FileOpKind.Write).ToList();
            if (writes.Count > maxWrites)
            {
                continue;
            }
            for (int cut = 0; cut <= end - start; cut++)
            {
                var truncates = Enumerable.Range(start, cut).Where(i => _log[i].Kind == FileOpKind.SetLength).ToList();
                for (int mask = 0; mask < 1 << writes.Count; mask++)
                {
                    var landed = writes.Where((_, b) => (mask & (1 << b)) != 0).Select(i => new PersistedWrite(i, null)).ToList();
                    yield return new CrashRecipe { Kind = "exhaustive", InOrder = start, Writes = landed, Truncates = truncates, Length = _lengthAfter[start + cut], Durable = start, Visible = end };
                }
            }
        }
    }

    /// <summary>Builds the file a recipe describes, in <paramref name="into"/> when given (its buffer is reused).</summary>
    public FileContent Materialize(CrashRecipe recipe, FileContent? into = null)
    {
        var (snapshotIndex, snapshot) = _snapshots.Last(s => s.Index <= recipe.InOrder);
        var content = into ?? new FileContent([]);
        content.CopyFrom(snapshot);
        for (int i = snapshotIndex; i < recipe.InOrder; i++)
        {
            content.Apply(_log[i]);
        }

        // A truncate that landed cut the synced bytes, and the bytes of every write issued before it.
        if (recipe.Truncates.Count > 0)
        {
            content.ZeroFrom(recipe.Truncates.Min(t => _log[t].Length));
        }
        foreach (var write in recipe.Writes)
        {
            var op = _log[write.OpIndex];
            long limit = long.MaxValue;
            foreach (int t in recipe.Truncates)
            {
                if (t > write.OpIndex)
                {
                    limit = Math.Min(limit, _log[t].Length);
                }
            }
            ApplySectors(content, op, write.Sectors, limit);
        }
        content.SetLength(recipe.Length);
        return content;
    }

    /// <summary>
    /// For every write of every epoch, the state where it alone was lost: the rest of the epoch landed and the file reached
    /// its length at the end of the epoch. A write that had to be on disk before a later one shows here.
    /// </summary>
    public IEnumerable<CrashRecipe> OneLost()
    {
        foreach (var (start, end) in _epochs)
        {
            var writes = Enumerable.Range(start, end - start).Where(i => _log[i].Kind == FileOpKind.Write).ToList();
            var truncates = Enumerable.Range(start, end - start).Where(i => _log[i].Kind == FileOpKind.SetLength).ToList();
            foreach (int lost in writes)
            {
                var landed = writes.Where(i => i != lost).Select(i => new PersistedWrite(i, null)).ToList();
                yield return new CrashRecipe { Kind = "one lost", InOrder = start, Writes = landed, Truncates = truncates, Length = _lengthAfter[end], Durable = start, Visible = end };
            }
        }
    }

    /// <summary>
    /// For every write of every epoch, the state where it alone landed, with the length the file had right after it, and
    /// with the length it had when the epoch began (a table update landed, the file did not grow).
    /// </summary>
    public IEnumerable<CrashRecipe> OneLanded()
    {
        foreach (var (start, end) in _epochs)
        {
            for (int i = start; i < end; i++)
            {
                if (_log[i].Kind == FileOpKind.Write)
                {
                    var truncates = Enumerable.Range(start, i - start).Where(t => _log[t].Kind == FileOpKind.SetLength).ToList();
                    yield return new CrashRecipe { Kind = "one landed", InOrder = start, Writes = [new PersistedWrite(i, null)], Truncates = truncates, Length = _lengthAfter[i + 1], Durable = start, Visible = end };
                    if (truncates.Count == 0 && _lengthAfter[start] != _lengthAfter[i + 1])
                    {
                        yield return new CrashRecipe { Kind = "one landed", InOrder = start, Writes = [new PersistedWrite(i, null)], Truncates = [], Length = _lengthAfter[start], Durable = start, Visible = end };
                    }
                }
            }
        }
    }

    /// <summary>
    /// The distinct crash states (by content) of the systematic families (prefixes, torn prefixes, one write lost, one write
    /// landed), then random reordered states, round robin over the epochs, until there are at least <paramref name="target"/>
    /// or many draws in a row found nothing new.
    /// </summary>
    public IReadOnlyList<CrashRecipe> DistinctStates(Random random, int target)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var chosen = new List<CrashRecipe>();
        var scratch = new FileContent([]);
        bool Add(CrashRecipe recipe)
        {
            var content = Materialize(recipe, scratch);
            if (seen.Add(Convert.ToHexString(SHA256.HashData(content.Span))))
            {
                chosen.Add(recipe);
                return true;
            }
            return false;
        }

        foreach (var recipe in Prefixes().Concat(TornPrefixes(random)).Concat(OneLost()).Concat(OneLanded()))
        {
            Add(recipe);
        }
        int fruitless = 0;
        for (int draw = 0; chosen.Count < target && _epochs.Count > 0 && fruitless < 50 * _epochs.Count; draw++)
        {
            fruitless = Add(Reordered(draw % _epochs.Count, random)) ? 0 : fruitless + 1;
        }
        return chosen;
    }

    private static int SectorCount(FileOp op) =>
        op.Kind != FileOpKind.Write ? 0 : (int)((op.End + SectorSize - 1) / SectorSize - op.Offset / SectorSize);

    private static bool[] RandomSectors(Random random, int count)
    {
        bool[] landed = new bool[count];
        for (int s = 0; s < count; s++)
        {
            landed[s] = random.Next(2) == 0;
        }
        return landed;
    }

    /// <summary>A length the file may show after a crash during <paramref name="op"/>: unchanged, grown to a sector boundary inside it, or grown to its end.</summary>
    private static long ChooseLengthDuring(Random random, FileOp op, long before)
    {
        if (op.Kind != FileOpKind.Write || op.End <= before)
        {
            return before;
        }
        long firstBoundary = (Math.Max(before, op.Offset) / SectorSize + 1) * SectorSize;
        long boundaries = (op.End - 1 - firstBoundary) / SectorSize + 1;
        return random.Next(3) switch
        {
            0 => before,
            1 when boundaries > 0 && firstBoundary < op.End => firstBoundary + random.NextInt64(boundaries) * SectorSize,
            _ => op.End,
        };
    }

    /// <summary>Applies the landed sectors of one write, nothing at or past <paramref name="limit"/>.</summary>
    private static void ApplySectors(FileContent content, FileOp op, bool[]? sectors, long limit)
    {
        long firstSector = op.Offset / SectorSize;
        int count = SectorCount(op);
        for (int s = 0; s < count; s++)
        {
            if (sectors is not null && !sectors[s])
            {
                continue;
            }
            long from = Math.Max(op.Offset, (firstSector + s) * SectorSize);
            long to = Math.Min(Math.Min(op.End, (firstSector + s + 1) * SectorSize), limit);
            if (to > from)
            {
                content.Write(from, op.Data.AsSpan((int)(from - op.Offset), (int)(to - from)));
            }
        }
    }
}
