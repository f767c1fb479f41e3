namespace Qed.Tests.Crash.Faults;

/// <summary>
/// What a virtual disk must read as: one known value per byte, except under requests that failed, where a byte may hold
/// its earlier value or the value the failed request carried (a failed or torn request may have landed in part).
/// </summary>
internal sealed class DiskModel
{
    private readonly byte[] _bytes;
    /// <summary>Extra values allowed at bytes under failed requests; the known value is always allowed too.</summary>
    private readonly Dictionary<long, HashSet<byte>> _alternatives = [];

    public DiskModel(byte[] initial) => _bytes = initial;

    public long Size => _bytes.Length;

    /// <summary>A request succeeded: these bytes are now known.</summary>
    public void Apply(long offset, ReadOnlySpan<byte> data)
    {
        data.CopyTo(_bytes.AsSpan((int)offset));
        if (_alternatives.Count > 0)
        {
            for (long i = offset; i < offset + data.Length; i++)
            {
                _alternatives.Remove(i);
            }
        }
    }

    /// <summary>A request failed: each of its bytes may hold its old value or <paramref name="data"/>'s.</summary>
    public void ApplyFailed(long offset, ReadOnlySpan<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            if (data[i] == _bytes[offset + i])
            {
                continue;
            }
            if (!_alternatives.TryGetValue(offset + i, out var set))
            {
                _alternatives[offset + i] = set = [];
            }
            set.Add(data[i]);
        }
    }

    /// <summary>A description of the first byte of <paramref name="actual"/> the model does not allow, or null.</summary>
    public string? FirstMismatch(ReadOnlySpan<byte> actual)
    {
        var expected = _bytes.AsSpan();
        int position = 0;
        while (position < actual.Length)
        {
            int same = actual[position..].CommonPrefixLength(expected[position..]);
            position += same;
            if (position == actual.Length)
            {
                break;
            }
            if (!_alternatives.TryGetValue(position, out var allowed) || !allowed.Contains(actual[position]))
            {
                return $"byte 0x{position:x} reads 0x{actual[position]:x2}, expected 0x{expected[position]:x2}" +
                    (allowed is null ? "" : $" or one of a failed request's [{string.Join(",", allowed.Select(b => b.ToString("x2")))}]");
            }
            position++;
        }
        return null;
    }
}
