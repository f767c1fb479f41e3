using System.Globalization;

namespace Qed.Cli.Output;

/// <summary>qemu-img's <c>-p</c> progress line, <c>    (42.00/100%)</c>, rewritten in place with carriage returns.</summary>
internal sealed class ProgressReporter
{
    // qemu-img redraws only when the value moved by at least one percent.
    private const double MinimumStep = 1.0;

    private readonly TextWriter? _writer;
    private double _lastPrinted = double.NegativeInfinity;

    /// <summary>Creates a reporter; a null writer makes it silent.</summary>
    public ProgressReporter(TextWriter? writer)
    {
        _writer = writer;
    }

    /// <summary>Prints the initial <c>0.00</c> line.</summary>
    public void Start() => Print(0);

    /// <summary>Reports <paramref name="done"/> of <paramref name="total"/> units.</summary>
    public void Report(long done, long total)
    {
        double percent = total <= 0 ? 100 : done * 100.0 / total;
        if (percent - _lastPrinted >= MinimumStep)
        {
            Print(percent);
        }
    }

    /// <summary>Prints the final <c>100.00</c> line and ends it with a newline.</summary>
    public void Finish()
    {
        if (_writer is null)
        {
            return;
        }
        Print(100);
        _writer.Write('\n');
        _writer.Flush();
    }

    private void Print(double percent)
    {
        _lastPrinted = percent;
        if (_writer is null)
        {
            return;
        }
        _writer.Write(string.Create(CultureInfo.InvariantCulture, $"    ({percent:F2}/100%)\r"));
        _writer.Flush();
    }
}
