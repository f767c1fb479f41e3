using Qed.Backing;
using Qed.Image;

namespace Qed.Tests.PowerCut;

/// <summary>One image session run over a <see cref="RecordingFileAccessor"/>: the file before it, everything it did to the file, and the guest requests with the log operations each issued.</summary>
internal sealed class RecordedSession
{
    public required string Path { get; init; }

    /// <summary>The file before the session: durable, since it was on disk before the session opened it.</summary>
    public required byte[] Initial { get; init; }

    public required IReadOnlyList<FileOp> Log { get; init; }

    public required IReadOnlyList<GuestOp> Ops { get; init; }

    /// <summary>
    /// Opens the image at <paramref name="path"/> (content <paramref name="initial"/>) with <paramref name="options"/>, runs
    /// <paramref name="maintenance"/> if any, then the requests, then closes it; the open and the close are logged too.
    /// </summary>
    public static async Task<RecordedSession> RunAsync(string path, byte[] initial, IEnumerable<GuestOp> ops, bool useAsync, ImageOpenOptions? options = null, Func<QedImage, Task>? maintenance = null)
    {
        var file = new RecordingFileAccessor(path, initial);
        var image = await QedImage.OpenCoreAsync(file, options ?? new ImageOpenOptions(), BackingChain.Start(path), useAsync, CancellationToken.None);
        var done = new List<GuestOp>();
        try
        {
            if (maintenance is not null)
            {
                await maintenance(image);
            }
            foreach (var op in ops)
            {
                int start = file.Count;
                switch (op.Kind)
                {
                    case GuestOpKind.Write:
                        byte[] data = GuestPattern.Bytes(op.Id, op.Offset, (int)op.Length);
                        if (useAsync)
                        {
                            await image.WriteAsync(data, op.Offset);
                        }
                        else
                        {
                            image.Write(data, op.Offset);
                        }
                        break;
                    case GuestOpKind.WriteZeroes:
                        if (useAsync)
                        {
                            await image.WriteZeroesAsync(op.Offset, op.Length);
                        }
                        else
                        {
                            image.WriteZeroes(op.Offset, op.Length);
                        }
                        break;
                    default:
                        if (useAsync)
                        {
                            await image.FlushAsync();
                        }
                        else
                        {
                            image.Flush();
                        }
                        break;
                }
                done.Add(op with { LogStart = start, LogEnd = file.Count });
            }
        }
        finally
        {
            if (useAsync)
            {
                await image.DisposeAsync();
            }
            else
            {
                image.Dispose();
            }
        }
        return new RecordedSession { Path = path, Initial = initial, Log = file.Log, Ops = done };
    }
}
