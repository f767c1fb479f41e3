namespace Qed.Tests.PowerCut;

/// <summary>
/// What the guest disk held before a session: the content beneath the image (its backing chain, zeros past the end),
/// overlaid, for a session that continues after a crash, with what that crashed image read once repaired.
/// </summary>
internal sealed class GuestBaseline
{
    private readonly byte[] _beneath;
    private readonly List<(long Offset, byte[] Bytes)> _overlay;

    public GuestBaseline(byte[] beneath, IEnumerable<(long Offset, byte[] Bytes)>? overlay = null)
    {
        _beneath = beneath;
        _overlay = (overlay ?? []).OrderBy(o => o.Offset).ToList();
    }

    /// <summary>An all-zero disk (no backing file).</summary>
    public static GuestBaseline Zeros { get; } = new([]);

    /// <summary>This baseline with <paramref name="overlay"/> on top (non-overlapping ranges).</summary>
    public GuestBaseline With(IEnumerable<(long Offset, byte[] Bytes)> overlay) => new(_beneath, _overlay.Concat(overlay));

    /// <summary>Fills <paramref name="destination"/> with the baseline content at <paramref name="offset"/>.</summary>
    public void Fill(long offset, Span<byte> destination)
    {
        destination.Clear();
        long end = offset + destination.Length;
        if (offset < _beneath.Length)
        {
            _beneath.AsSpan((int)offset, (int)(Math.Min(end, _beneath.Length) - offset)).CopyTo(destination);
        }
        foreach (var (start, bytes) in _overlay)
        {
            long from = Math.Max(start, offset), to = Math.Min(start + bytes.Length, end);
            if (from < to)
            {
                bytes.AsSpan((int)(from - start), (int)(to - from)).CopyTo(destination[(int)(from - offset)..]);
            }
        }
    }
}
