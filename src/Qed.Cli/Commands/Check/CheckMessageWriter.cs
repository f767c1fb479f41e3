using System.Text;
using Qed.Check;

namespace Qed.Cli.Commands.Check;

/// <summary>
/// Prints a check's messages on stderr as they are found, as qemu-img does (driver lines as they are, errors and warnings
/// with the program name), in batches: a damaged image can yield millions of lines, and the program's stderr flushes
/// every write.
/// </summary>
internal sealed class CheckMessageWriter(TextWriter writer)
{
    private const int BatchChars = 1 << 16;
    private readonly StringBuilder _pending = new();

    /// <summary>Queues one message; prints the batch when it is full.</summary>
    public void Write(CheckMessage message)
    {
        switch (message.Kind)
        {
            case CheckMessageKind.Error:
                _pending.Append(Program.Name).Append(": ").Append(message.Text).Append('\n');
                break;
            case CheckMessageKind.Warning:
                _pending.Append(Program.Name).Append(": warning: ").Append(message.Text).Append('\n');
                break;
            case CheckMessageKind.Unterminated:
                _pending.Append(message.Text);
                break;
            default:
                _pending.Append(message.Text).Append('\n');
                break;
        }
        if (_pending.Length >= BatchChars)
        {
            Flush();
        }
    }

    /// <summary>Queues every message of <paramref name="messages"/>.</summary>
    public void WriteAll(IEnumerable<CheckMessage> messages)
    {
        foreach (var message in messages)
        {
            Write(message);
        }
    }

    /// <summary>Prints what is queued.</summary>
    public void Flush()
    {
        if (_pending.Length > 0)
        {
            writer.Write(_pending.ToString());
            _pending.Clear();
        }
    }
}
